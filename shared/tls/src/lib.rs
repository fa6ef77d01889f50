//! lacnet-tls (TODO).
