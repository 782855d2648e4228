//! What oidcgate knows about an OpenID Provider: its discovery metadata ([`metadata`]) and its
//! signing keys, cached per issuer ([`key_cache`]).

pub mod cache_control;
pub mod key_cache;
pub mod metadata;

pub use key_cache::{KeyCache, KeyCacheConfig, KeyCacheError, KeySnapshot, KeySource};
pub use metadata::{DiscoveryError, ProviderMetadata, discovery_url};
