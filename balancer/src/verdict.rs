//! What a failed attempt leads to, and whom it is blamed on: the proxy's policy, kept apart
//! from the engine that sends and retries ([`crate::proxy`]), as pingora keeps
//! `fail_to_connect` / `error_while_proxy` apart from the code that retries.
//!
//! Every failed attempt comes here, as a [`Cause`] and how far the request got ([`Reached`],
//! decided once, by [`crate::proxy`]'s `Exchange::failed`), and [`judge`] returns the one
//! [`Verdict`]: the next step and the [`Blame`].
//!
//! The rules, in order:
//! 1. The client's own upload fault (stalled, reset, malformed) is answered 408/400 and
//!    blamed on nobody.
//! 2. Nothing reached the backend (no request slot in time, connect failed, or hyper handed
//!    the request back unsent): the request goes to the next backend. Only a failed connect
//!    (or a fresh connection that failed before a byte went out) is the backend's failure
//!    and ejects it; no slot in time is load, not a fault, and stays off its record; a pooled
//!    connection found closed is replaced by a new one to the same backend, blaming nobody.
//! 3. No response headers within `UPSTREAM_TIMEOUT` of the body being sent: 504, on the
//!    backend's record, not ejected (slow is not dead).
//! 4. The backend stopped taking the request body before it was all sent, and no answer
//!    came (an answer would have been relayed): 502, on its record as a response only. It
//!    may have refused the upload on purpose; its failure is not proven.
//! 5. Anything else after the request may have been sent (reset, truncated or malformed
//!    response) is the backend's failure (a broken connection also ejects it). A GET, HEAD or
//!    OPTIONS whose body was not touched is replayed once on another backend, unless the
//!    response head was too large (the backend answered; it would answer the same again).
//!    A replay that fails too is answered 502 and blamed on nobody: one request cannot take
//!    out two backends.

use crate::body::ClientFault;

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No request slot on the backend within `UPSTREAM_TIMEOUT`.
    SlotTimeout,
    /// The TCP connect failed or timed out.
    Connect,
    /// A pooled connection was found closed before anything was written on it.
    Stale,
    /// No response headers within `UPSTREAM_TIMEOUT` of the request being sent.
    HeaderTimeout,
    /// The exchange failed: the connection broke (reset, closed early).
    Broken,
    /// The exchange failed: the response head was larger than `MAX_HEADER_SIZE`.
    HeadTooLarge,
    /// The exchange failed otherwise (a malformed response).
    Malformed,
}

/// How far a failed attempt got: the one answer to "was anything sent?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Nothing was written: the request is back in hand, for any backend.
    Nothing,
    /// The head may have been sent; the body (if any) was not touched, so the whole request
    /// can still go to another backend.
    Head,
    /// Some of the body was taken from the client; `whole` once it was all sent.
    Body {
        /// The backend took the whole body.
        whole: bool,
    },
}

/// Whom a failed attempt counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Blame {
    /// Nobody: the answer counts against no backend.
    Nobody,
    /// The answer the client gets is counted on the backend's record (its 5xx), but no
    /// failure.
    Answer,
    /// A failure of the backend's own (counted; the answer too, if there is one).
    Failure,
    /// A failure that points at a dead backend: counted, and the backend ejected.
    Eject,
}

/// The status the client gets when the request is answered here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The client's upload fault.
    Client(ClientFault),
    /// 502.
    BadGateway,
    /// 504: no response headers in time.
    GatewayTimeout,
}

/// The next step after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The request in hand goes to the next backend.
    Retry,
    /// The request in hand goes to the same backend on a new connection.
    Reconnect,
    /// The request is rebuilt from its copy and sent once more, to the next backend.
    Replay,
    /// The client is answered.
    Answer(Reply),
}

/// What [`judge`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// What happens next.
    pub step: Step,
    /// Whom it is counted against.
    pub blame: Blame,
}

/// What the exchange knows beyond the failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The client's upload failed, and how.
    pub client_fault: Option<ClientFault>,
    /// The request may be sent again after it may have been sent (a GET, HEAD or OPTIONS
    /// with its copy kept) and attempts are left.
    pub replayable: bool,
    /// This attempt was already the replay.
    pub replayed: bool,
}

fn verdict(step: Step, blame: Blame) -> Verdict {
    Verdict { step, blame }
}

/// The one decision on a failed attempt (see the module docs for the rules).
pub fn judge(cause: Cause, reached: Reached, facts: Facts) -> Verdict {
    if let Some(fault) = facts.client_fault {
        return verdict(Step::Answer(Reply::Client(fault)), Blame::Nobody);
    }
    match (cause, reached) {
        (Cause::SlotTimeout, _) => verdict(Step::Retry, Blame::Nobody),
        (Cause::Stale, _) => verdict(Step::Reconnect, Blame::Nobody),
        (Cause::Connect, _) | (_, Reached::Nothing) => verdict(Step::Retry, Blame::Eject),
        (Cause::HeaderTimeout, _) => verdict(Step::Answer(Reply::GatewayTimeout), Blame::Answer),
        (_, Reached::Body { whole: false }) => {
            verdict(Step::Answer(Reply::BadGateway), Blame::Answer)
        }
        (_, _) if facts.replayed => verdict(Step::Answer(Reply::BadGateway), Blame::Nobody),
        (cause, reached) => {
            let blame = if cause == Cause::Broken {
                Blame::Eject
            } else {
                Blame::Failure
            };
            let step =
                if reached == Reached::Head && facts.replayable && cause != Cause::HeadTooLarge {
                    Step::Replay
                } else {
                    Step::Answer(Reply::BadGateway)
                };
            verdict(step, blame)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Facts = Facts {
        client_fault: None,
        replayable: true,
        replayed: false,
    };
    const POST: Facts = Facts {
        client_fault: None,
        replayable: false,
        replayed: false,
    };

    #[test]
    fn the_clients_fault_is_nobodys_whatever_the_backend_did() {
        let stalled = Facts {
            client_fault: Some(ClientFault::Stalled),
            ..POST
        };
        for cause in [Cause::Broken, Cause::HeaderTimeout, Cause::Malformed] {
            let v = judge(cause, Reached::Body { whole: false }, stalled);
            assert_eq!(
                v,
                verdict(
                    Step::Answer(Reply::Client(ClientFault::Stalled)),
                    Blame::Nobody
                )
            );
        }
    }

    #[test]
    fn what_sent_nothing_goes_on_and_only_a_failed_connect_is_blamed() {
        assert_eq!(
            judge(Cause::SlotTimeout, Reached::Nothing, POST),
            verdict(Step::Retry, Blame::Nobody)
        );
        assert_eq!(
            judge(Cause::Stale, Reached::Nothing, POST),
            verdict(Step::Reconnect, Blame::Nobody)
        );
        assert_eq!(
            judge(Cause::Connect, Reached::Nothing, POST),
            verdict(Step::Retry, Blame::Eject)
        );
        assert_eq!(
            judge(Cause::Broken, Reached::Nothing, POST),
            verdict(Step::Retry, Blame::Eject)
        );
    }

    #[test]
    fn a_refused_upload_is_a_502_that_ejects_nobody() {
        for cause in [Cause::Broken, Cause::Malformed] {
            assert_eq!(
                judge(cause, Reached::Body { whole: false }, POST),
                verdict(Step::Answer(Reply::BadGateway), Blame::Answer)
            );
        }
        // Once the whole body was taken, a reset is the backend's.
        assert_eq!(
            judge(Cause::Broken, Reached::Body { whole: true }, POST),
            verdict(Step::Answer(Reply::BadGateway), Blame::Eject)
        );
    }

    #[test]
    fn safe_requests_are_replayed_once_and_a_replays_failure_blames_nobody() {
        assert_eq!(
            judge(Cause::Broken, Reached::Head, GET),
            verdict(Step::Replay, Blame::Eject)
        );
        assert_eq!(
            judge(Cause::Malformed, Reached::Head, GET),
            verdict(Step::Replay, Blame::Failure)
        );
        assert_eq!(
            judge(Cause::HeadTooLarge, Reached::Head, GET),
            verdict(Step::Answer(Reply::BadGateway), Blame::Failure)
        );
        assert_eq!(
            judge(Cause::Broken, Reached::Head, POST),
            verdict(Step::Answer(Reply::BadGateway), Blame::Eject)
        );
        let again = Facts {
            replayed: true,
            ..GET
        };
        assert_eq!(
            judge(Cause::Broken, Reached::Head, again),
            verdict(Step::Answer(Reply::BadGateway), Blame::Nobody)
        );
    }

    #[test]
    fn a_slow_backend_gets_504_on_its_record_and_stays() {
        assert_eq!(
            judge(Cause::HeaderTimeout, Reached::Head, GET),
            verdict(Step::Answer(Reply::GatewayTimeout), Blame::Answer)
        );
    }
}
