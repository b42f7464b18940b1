//! The registrar's bindings as the admin API shows them
//! (`GET /v2/accounts/{account}/registrations`, behaviour.md §8). The API only reads them
//! through [`RegistrationSource`]: it does not depend on the proxy core, which implements
//! the trait over its registrar.

use serde::Serialize;

/// One current binding of a registered server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationView {
    /// The name of the password-auth server the binding belongs to.
    pub server: String,
    /// `auth_user@auth_realm` of that server.
    pub aor: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// Where the REGISTER came from, `transport:ip:port` (`"udp:127.0.0.7:5060"`): requests
    /// for the binding are sent there.
    pub source: String,
    /// `"udp"` or `"tcp"`.
    pub transport: String,
    /// The REGISTER's User-Agent, when it had one.
    pub user_agent: Option<String>,
    /// Seconds until the binding expires.
    pub expires_in: u64,
    /// Behind NAT: the Contact is a private address or differs from the source.
    pub nat: bool,
}

/// The registrar, as far as the API needs it. Called off the async threads (it may take
/// the registrar's lock), once per request.
pub trait RegistrationSource: Send + Sync {
    /// The current bindings of `account`'s servers (empty for an unknown account), in the
    /// order the API lists them.
    fn registrations(&self, account: &str) -> Vec<RegistrationView>;
}
