//! Who may do what, one function per role decision, on the caller's [`Peer`]
//! (parsed from the SPIFFE URI SAN of its verified client certificate).
//!
//! - Only a site may submit, and only for its own ONS code.
//! - Analysts read every report; sites read their own rows, and the network
//!   comparison when the `sites_see_network` policy switch is on.
//! - Council and operator identities (for calling a site agent) have no business at the hub.

use lacnet_tls::Peer;

use crate::HubError;

/// What a reader may see in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadScope {
    /// Every site (analysts; sites when `sites_see_network` is on).
    Network,
    /// Only this site's own figures.
    OwnSite(String),
}

/// May `peer` submit aggregates for `site_code`?
pub fn may_submit(peer: &Peer, site_code: &str) -> Result<(), HubError> {
    match peer {
        Peer::Site(own) if own == site_code => Ok(()),
        Peer::Site(own) => Err(HubError::PermissionDenied(format!(
            "site {own} may submit only for itself, not for {site_code}"
        ))),
        Peer::Analyst(_) => Err(HubError::PermissionDenied(
            "analysts may read reports but not submit".into(),
        )),
        Peer::Council(_) | Peer::Operator(_) => Err(HubError::PermissionDenied(
            "council and operator identities may not submit to the hub; use the site agent's \
             certificate"
                .into(),
        )),
    }
}

/// May `peer` list the releases the hub holds for `site_code`? Only the
/// site itself: another site's revisions and digests are not its business.
pub fn may_list_releases(peer: &Peer, site_code: &str) -> Result<(), HubError> {
    match peer {
        Peer::Site(own) if own == site_code => Ok(()),
        Peer::Site(own) => Err(HubError::PermissionDenied(format!(
            "site {own} may list only its own releases, not those of {site_code}"
        ))),
        _ => Err(HubError::PermissionDenied(
            "only a site may list its releases (with its own site certificate)".into(),
        )),
    }
}

/// What `peer` may read from reports.
pub fn read_scope(peer: &Peer, sites_see_network: bool) -> Result<ReadScope, HubError> {
    match peer {
        Peer::Analyst(_) => Ok(ReadScope::Network),
        Peer::Site(_) if sites_see_network => Ok(ReadScope::Network),
        Peer::Site(own) => Ok(ReadScope::OwnSite(own.clone())),
        Peer::Council(_) | Peer::Operator(_) => Err(HubError::PermissionDenied(
            "council and operator identities may not read hub reports".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        let thurrock = Peer::Site("E06000034".into());
        assert!(may_submit(&thurrock, "E06000034").is_ok());
        assert!(matches!(
            may_submit(&thurrock, "E06000015"),
            Err(HubError::PermissionDenied(_))
        ));
        assert!(may_submit(&Peer::Analyst("a".into()), "E06000034").is_err());
        assert!(may_submit(&Peer::Council("c".into()), "E06000034").is_err());

        assert_eq!(read_scope(&thurrock, true).unwrap(), ReadScope::Network);
        assert_eq!(
            read_scope(&thurrock, false).unwrap(),
            ReadScope::OwnSite("E06000034".into())
        );
        assert_eq!(
            read_scope(&Peer::Analyst("a".into()), false).unwrap(),
            ReadScope::Network
        );
        assert!(read_scope(&Peer::Council("c".into()), true).is_err());
        assert!(read_scope(&Peer::Operator("o".into()), true).is_err());
        assert!(may_submit(&Peer::Operator("o".into()), "E06000034").is_err());
        assert!(may_list_releases(&thurrock, "E06000034").is_ok());
        assert!(matches!(
            may_list_releases(&thurrock, "E06000015"),
            Err(HubError::PermissionDenied(_))
        ));
        assert!(may_list_releases(&Peer::Analyst("a".into()), "E06000034").is_err());
    }
}
