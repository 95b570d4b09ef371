//! Counts in messages, reports and logs: "1 article", "2 articles", "1 epoch", "0.5 epochs".

/// `n` and the noun, plural unless `n` is 1 (`noun` is singular; the plural adds an "s").
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A length in epochs (a number or a point's label, fractions allowed): "1 epoch",
/// "0.5 epochs", "2 epochs".
pub fn epochs(e: impl std::fmt::Display) -> String {
    let e = e.to_string();
    if e == "1" {
        "1 epoch".to_string()
    } else {
        format!("{e} epochs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(1, "article"), "1 article");
        assert_eq!(count(0, "article"), "0 articles");
        assert_eq!(count(28, "article"), "28 articles");
        assert_eq!(epochs(1.0), "1 epoch");
        assert_eq!(epochs(0.5), "0.5 epochs");
        assert_eq!(epochs(2.0), "2 epochs");
        assert_eq!(epochs("1"), "1 epoch");
    }
}
