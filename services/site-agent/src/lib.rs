//! lacnet-site-agent (TODO).
