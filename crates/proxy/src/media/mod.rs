//! Media through rtpengine (issue 16): its NG control protocol and the client that picks
//! an instance per call, retransmits and fails over. Plain values on a virtual clock; the
//! call flow emits the requests as actions and resumes when the reply or failure comes.

pub(crate) mod bencode;
pub(crate) mod client;
pub(crate) mod ng;
pub(crate) mod relay;
