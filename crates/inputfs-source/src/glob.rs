//! The glob in an input URL's last segment (`s3://b/data/*.csv`), matched against
//! each listed key's path relative to the glob's parent prefix.
//!
//! Shell semantics, kept deliberately small so users can predict them: `*` matches
//! any run of characters except `/` (so `*.csv` takes only the prefix's direct
//! children), `**` matches any run including `/` (so `**.csv` takes every `.csv`
//! below the prefix), `?` matches one character except `/`. There are no character
//! classes and no escapes: no other character is special.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    DoubleStar,
}

fn tokenize(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' if chars.peek() == Some(&'*') => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                Token::DoubleStar
            }
            '*' => Token::Star,
            '?' => Token::One,
            c => Token::Lit(c),
        });
    }
    out
}

/// Whether `text` (a relative path) matches `pattern`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pat = tokenize(pattern);
    let text: Vec<char> = text.chars().collect();
    // can[j]: pat[..i] matches text[..j], for the current i.
    let mut can = vec![false; text.len() + 1];
    can[0] = true;
    for tok in &pat {
        let mut next = vec![false; text.len() + 1];
        match tok {
            Token::Star | Token::DoubleStar => {
                let crosses = *tok == Token::DoubleStar;
                for j in 0..=text.len() {
                    // Either the star matches nothing here, or extends a match by one char.
                    next[j] = can[j] || (j > 0 && next[j - 1] && (crosses || text[j - 1] != '/'));
                }
            }
            Token::One => {
                for j in 1..=text.len() {
                    next[j] = can[j - 1] && text[j - 1] != '/';
                }
            }
            Token::Lit(c) => {
                for j in 1..=text.len() {
                    next[j] = can[j - 1] && text[j - 1] == *c;
                }
            }
        }
        can = next;
        if !can.iter().any(|&b| b) {
            return false;
        }
    }
    can[text.len()]
}

/// Whether matching `pattern` may need keys below sub-directories of the prefix.
pub fn is_recursive(pattern: &str) -> bool {
    pattern.contains("**")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_one_segment() {
        assert!(glob_match("*.csv", "a.csv"));
        assert!(glob_match("*.csv", ".csv"));
        assert!(!glob_match("*.csv", "sub/a.csv"));
        assert!(!glob_match("*.csv", "a.csv.gz"));
        assert!(glob_match("part-*", "part-0001"));
        assert!(glob_match("*", "x"));
        assert!(!glob_match("*", "x/y"));
    }

    #[test]
    fn double_star_crosses_directories() {
        assert!(glob_match("**.csv", "a.csv"));
        assert!(glob_match("**.csv", "sub/dir/a.csv"));
        assert!(!glob_match("**.csv", "sub/dir/a.txt"));
        assert!(glob_match("**", "a/b/c"));
        assert!(is_recursive("**.csv"));
        assert!(!is_recursive("*.csv"));
    }

    #[test]
    fn question_mark_is_one_char() {
        assert!(glob_match("file-?.bin", "file-1.bin"));
        assert!(!glob_match("file-?.bin", "file-12.bin"));
        assert!(!glob_match("a?b", "a/b"));
        assert!(glob_match("???", "abc"));
        assert!(!glob_match("???", "ab"));
    }

    #[test]
    fn literals_and_unicode() {
        assert!(glob_match("ä*ö", "äxyzö"));
        assert!(glob_match("[a].txt", "[a].txt"));
        assert!(!glob_match("abc", "abd"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b*", "xxbxxaxx"));
    }
}
