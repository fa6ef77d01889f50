//! Moving an older store layout to the current one at open.

use super::*;

/// Moves a schema-1 store (one sled key per record) into segment files.
pub(super) fn migrate_v1(
    db: &sled::Db,
    trees: &Trees,
    segments: &SegmentDir,
) -> Result<(), AgentError> {
    let old = db.open_tree("records")?;
    let mut seg = 0u32;
    let mut b = SegmentBuilder::new();
    for v in old.iter().values() {
        let v = v?;
        decode_record(&v)?;
        if b.push(&v, None).is_none() {
            segments.write(seg, &std::mem::take(&mut b).into_bytes(), true)?;
            seg += 1;
            b.push(&v, None);
        }
    }
    if !b.is_empty() {
        segments.write(seg, &b.into_bytes(), true)?;
    }
    segments.sync_dir()?;
    trees
        .meta
        .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])?;
    db.flush()?;
    db.drop_tree("records")?;
    db.drop_tree("persons")?;
    db.flush()?;
    tracing::info!("migrated the store to schema version {SCHEMA_VERSION}");
    Ok(())
}
