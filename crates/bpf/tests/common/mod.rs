//! What the BPF tests share: the root check.

/// Whether the tests can run: root. Without it they fail under CI (`CI=true`) and report a
/// counted skip elsewhere ([`lvs_testkit::skip`]).
pub fn root_or_skip(what: &str) -> bool {
    lvs_testkit::root_or_skip(what)
}
