//! "Did you mean …?" for a mistyped option or command: the known name
//! nearest to what was typed, if it is near enough to be a typo.

use super::flags::{FLAGS, MODES};

/// The known option or command closest to `typed` (`--intreval`,
/// `agnets`), or `None` when nothing is close: a wild guess would mislead
/// more than no guess.
pub fn suggest(typed: &str) -> Option<&'static str> {
    let known = FLAGS.iter().map(|f| f.name).chain(MODES.iter().copied());
    // A unique prefix is what a user who stopped typing meant.
    let mut prefixed: Vec<&str> = known
        .clone()
        .filter(|k| typed.len() >= 4 && k.starts_with(typed))
        .collect();
    prefixed.dedup();
    if let [only] = prefixed[..] {
        return Some(only);
    }
    // One edit per four characters typed, at least one, at most three.
    let limit = (typed.chars().count() / 4).clamp(1, 3);
    known
        .map(|k| (distance(typed, k), k))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// Damerau-Levenshtein distance (optimal string alignment): insertions,
/// deletions, substitutions and swaps of two neighbours, the typos a
/// keyboard makes.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_option() {
        assert_eq!(suggest("--intreval"), Some("--interval"));
        assert_eq!(suggest("--lsiten"), Some("--listen"));
        assert_eq!(suggest("--state_dir"), Some("--state-dir"));
        assert_eq!(suggest("--keyfile"), Some("--key-file"));
        assert_eq!(suggest("--heartbeats"), Some("--heartbeat"));
        assert_eq!(suggest("--inter"), Some("--interval"));
        assert_eq!(suggest("--mastre"), Some("--master"));
        assert_eq!(suggest("agnets"), Some("agents"));
        assert_eq!(suggest("stauts"), Some("status"));
    }

    #[test]
    fn nothing_close_means_no_guess() {
        assert_eq!(suggest("--frobnicate"), None);
        assert_eq!(suggest("deploy"), None);
        assert_eq!(suggest("x"), None);
    }

    #[test]
    fn distances() {
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("abc", "acb"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
