//! Evidence of a hop, from two sources. With the JSON endpoint the app names the replica that
//! answered twice: the `X-Served-By` header and the body's `node` (and, for an increment, the
//! last entry of the session's `history`, the replica that just counted the visit). A hop is
//! only evidence when they agree: a header rewritten on the way, or a body that always names
//! one replica, would otherwise prove hops that never happened.
//!
//! The replica of an answer is always the header's: an answer without `X-Served-By` names no
//! replica and proves no hop, whatever its body says. The text endpoint's body names no
//! replica, so there the header is the only witness.

use crate::endpoint::{Counter, Endpoint};

/// Why an answer's two names for its replica disagree, if they do.
pub fn disagreement(
    endpoint: Endpoint,
    increment: bool,
    served_by: Option<&str>,
    counter: &Counter,
) -> Option<String> {
    if endpoint != Endpoint::Json {
        return None;
    }
    let node = counter.node.as_deref();
    match (served_by, node) {
        (Some(header), Some(body)) if header != body => {
            return Some(format!("X-Served-By {header}, body node {body}"));
        }
        (Some(header), None) => {
            return Some(format!("X-Served-By {header}, the body names no node"));
        }
        _ => {}
    }
    let last = counter.history.as_ref().and_then(|h| h.last());
    match (increment, node, last) {
        (true, Some(body), Some(last)) if body != last => Some(format!(
            "body node {body}, but the history it just counted ends with {last}"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(node: Option<&str>, history: Option<&[&str]>) -> Counter {
        Counter {
            views: 1,
            node: node.map(str::to_owned),
            history: history.map(|h| h.iter().map(|n| (*n).to_owned()).collect()),
            session: None,
        }
    }

    #[test]
    fn agreeing_names_are_evidence() {
        let c = counter(Some("app-2"), Some(&["app-1", "app-2"]));
        assert_eq!(disagreement(Endpoint::Json, true, Some("app-2"), &c), None);
        // An empty or absent history has nothing to compare.
        let c = counter(Some("app-2"), Some(&[]));
        assert_eq!(disagreement(Endpoint::Json, true, Some("app-2"), &c), None);
    }

    #[test]
    fn a_header_that_names_another_replica_is_a_mismatch() {
        let c = counter(Some("app-1"), Some(&["app-1"]));
        assert_eq!(
            disagreement(Endpoint::Json, true, Some("app-3"), &c).as_deref(),
            Some("X-Served-By app-3, body node app-1")
        );
        let c = counter(None, None);
        assert!(
            disagreement(Endpoint::Json, true, Some("app-3"), &c)
                .is_some_and(|m| m.contains("names no node"))
        );
    }

    #[test]
    fn a_history_that_ends_elsewhere_is_a_mismatch_for_increments_only() {
        let c = counter(Some("app-2"), Some(&["app-1"]));
        assert_eq!(
            disagreement(Endpoint::Json, true, Some("app-2"), &c).as_deref(),
            Some("body node app-2, but the history it just counted ends with app-1")
        );
        // A read counts nothing: its history ends with whoever counted last.
        assert_eq!(disagreement(Endpoint::Json, false, Some("app-2"), &c), None);
    }

    #[test]
    fn the_text_endpoint_has_one_source() {
        let c = counter(None, None);
        assert_eq!(disagreement(Endpoint::Text, true, Some("app-1"), &c), None);
    }
}
