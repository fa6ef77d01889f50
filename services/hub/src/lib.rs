//! lacnet-hub (TODO).
