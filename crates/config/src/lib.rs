//! Configuration of trunkstore: the proxy settings file, connectivity documents (model,
//! validation, storage) and number normalisation, implementing the product spec
//! (behaviour.md §1–2).
//!
//! Typical use:
//!
//! ```no_run
//! let catalog = trunkstore_config::load_all("config/trunkstore.json".as_ref())
//!     .expect("valid configuration");
//! println!("{}", catalog.summary());
//! ```
//!
//! * [`Settings`]: proxy settings ([`Settings::load`]).
//! * [`validate_document`]: one connectivity document → [`Document`] or
//!   [`ValidationErrors`] (the REST API's error body).
//! * [`Catalog`]: settings + documents with the system-wide checks (DID and IP uniqueness,
//!   carrier overlap); immutable, rebuilt for every change.
//! * [`numbers`]: E.164 normalisation and Request-URI user formats.
//! * storage: [`load_connectivity_dir`], [`write_document_atomically`], [`delete_document`].

#![warn(missing_docs, unreachable_pub)]

mod catalog;
mod claims;
mod document;
mod error;
mod files;
pub mod ids;
pub mod numbers;
mod secret;
mod settings;
mod storage;
mod syntax;
mod targets;
mod validate;
mod walk;

pub use catalog::{Catalog, DidMatch, NamedTarget, Summary};
pub use claims::DidRef;
pub use document::{
    merged_sip_headers, Account, Auth, AuthMethod, CallOptions, CallerId, Did, DidOptions,
    Document, EffectiveOptions, Failover, FailoverTarget, MediaHandling, Server, ServerOptions,
    SipHeader,
};
pub use error::{FileErrors, ValidationError, ValidationErrors};
pub use files::{document_path, read_json, relative_document_path};
pub use numbers::NumberFormat;
pub use secret::Secret;
pub use settings::{
    Api, ApiToken, Carrier, Cdr, Cluster, DigestAlgorithm, DigestAuth, Dns, DocumentStore,
    FailoverOn, FailoverTrigger, Gateway, Host, HostPort, Limits, Listen, ListenerAdvertise, Log,
    LogFormat, Media, MediaFailure, Metrics, Protection, Registrar, RtpEngine, Settings, Source,
    Timers, Tls, TlsListen, Transport, DEFAULT_SCANNER_USER_AGENTS, DEFAULT_SETTINGS_PATH,
};
pub use storage::{
    delete_document, load_all, load_connectivity_dir, load_document, write_document_atomically,
};
pub use validate::validate_document;
