//! Interned agent texts (group labels, software strings): a fleet of
//! thousands of agents has a handful of distinct ones, so each agent holds
//! an `Arc<str>` (two words, no heap of its own) to the one shared copy
//! (issue 12: idle bytes per agent).
//!
//! Unauthenticated (legacy) clients may send any text, so a text is
//! dropped from the set once no agent holds it: the set is bounded by the
//! agents, which are bounded elsewhere.

use std::collections::HashSet;
use std::sync::Arc;

/// The distinct texts agents hold.
#[derive(Debug)]
pub struct Texts {
    set: HashSet<Arc<str>>,
    /// The empty text, held here for good: every new agent starts with it.
    empty: Arc<str>,
}

impl Default for Texts {
    fn default() -> Texts {
        Texts {
            set: HashSet::new(),
            empty: Arc::from(""),
        }
    }
}

impl Texts {
    /// The shared empty text.
    pub fn empty(&self) -> Arc<str> {
        self.empty.clone()
    }

    /// The shared copy of `s`, made if it is new.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if s.is_empty() {
            return self.empty();
        }
        if let Some(t) = self.set.get(s) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(s);
        self.set.insert(t.clone());
        t
    }

    /// Replaces `slot` by the shared copy of `s` (nothing to do when it
    /// already holds it), forgetting the old text if no one else holds it.
    pub fn replace(&mut self, slot: &mut Arc<str>, s: &str) {
        if **slot == *s {
            return;
        }
        let old = std::mem::replace(slot, self.intern(s));
        self.release(old);
    }

    /// An agent let go of `t`: forgotten when only the set still holds it.
    pub fn release(&mut self, t: Arc<str>) {
        // Two holders: the set and `t` itself.
        if !t.is_empty() && Arc::strong_count(&t) == 2 {
            self.set.remove(&*t);
        }
    }

    /// Distinct texts held (the empty one not counted).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no text but the empty one is held.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_share_one_copy_and_unused_texts_are_forgotten() {
        let mut t = Texts::default();
        let a = t.intern("site-a");
        let b = t.intern("site-a");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(t.len(), 1);
        let mut slot = a;
        t.replace(&mut slot, "site-b");
        assert_eq!(&*slot, "site-b");
        // `b` still holds site-a.
        assert_eq!(t.len(), 2);
        t.release(b);
        assert_eq!(t.len(), 1);
        t.release(slot);
        assert!(t.is_empty());
        assert!(Arc::ptr_eq(&t.intern(""), &t.empty()));
    }
}
