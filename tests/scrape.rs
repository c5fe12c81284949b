//! Reading a mount's Prometheus endpoint (`--metrics-addr`) from tests: a plain
//! HTTP/1.1 GET over a socket and a parse of the text format into series.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// GET http://ADDR/PATH; returns (status line, body).
pub fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// One scrape, as `name{labels}` → value.
pub struct Scrape(HashMap<String, f64>);

pub fn scrape(addr: &str) -> Scrape {
    let (status, body) = get(addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let mut values = HashMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        values.insert(series.to_string(), value.parse().expect("a number"));
    }
    Scrape(values)
}

impl Scrape {
    /// The value of a series, 0 when absent (a counter never incremented).
    pub fn get(&self, series: &str) -> u64 {
        self.0.get(series).copied().unwrap_or(0.0) as u64
    }
    pub fn has(&self, series: &str) -> bool {
        self.0.contains_key(series)
    }
}
