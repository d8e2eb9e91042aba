//! [`Glob`]: shell patterns with `*` and `?`.

/// A shell glob with `*` (any run of characters) and `?` (one character), matched against whole strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<char>);

impl Glob {
    /// The pattern `p`.
    pub fn new(p: &str) -> Self {
        Glob(p.chars().collect())
    }

    /// Whether `s` matches the whole pattern.
    pub fn matches(&self, s: &str) -> bool {
        let s: Vec<char> = s.chars().collect();
        let (p, mut pi, mut si) = (&self.0, 0, 0);
        let (mut star, mut mark) = (None, 0);
        while si < s.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some(pi);
                mark = si;
                pi += 1;
            } else if let Some(st) = star {
                pi = st + 1;
                mark += 1;
                si = mark;
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(Glob::new("ba*").matches("bash"));
        assert!(Glob::new("*sh").matches("bash"));
        assert!(Glob::new("b?sh").matches("bash"));
        assert!(Glob::new("bash").matches("bash"));
        assert!(!Glob::new("bash").matches("bashx"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a*b*c").matches("aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches("aXXbYY"));
    }
}
