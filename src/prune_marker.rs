//! The format of the marker entries retention pruning writes, which `verify` reads: one per
//! pruning batch, entity type [`PRUNE_ENTITY`], action [`PRUNE_ACTION`], and in `data` the
//! policy, the count removed and `chains`: per chain it truncated, `[entity_type, object_id,
//! id, hash]` of the newest entry it removed — the entry that chain's oldest remaining entry
//! links to.

use serde_json::{Value as Json, json};

/// Entity type of the marker rows.
pub(crate) const PRUNE_ENTITY: &str = "audit_log";
/// Action of the marker rows.
pub(crate) const PRUNE_ACTION: &str = "prune";
/// The key of the chain list in a marker's `data`.
pub(crate) const CHAINS: &str = "chains";

/// The newest entry a prune removed from one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrunedChain {
    pub(crate) entity_type: String,
    pub(crate) object_id: String,
    pub(crate) id: i64,
    pub(crate) hash: String,
}

/// A marker's `chains` value.
pub(crate) fn encode(chains: impl IntoIterator<Item = PrunedChain>) -> Json {
    Json::Array(
        chains
            .into_iter()
            .map(|c| json!([c.entity_type, c.object_id, c.id, c.hash]))
            .collect(),
    )
}

/// The chains a marker's `data` lists (malformed items are skipped: they accept nothing).
pub(crate) fn decode(data: &Json) -> impl Iterator<Item = PrunedChain> + '_ {
    data.get(CHAINS)
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(PrunedChain {
                entity_type: c.get(0)?.as_str()?.to_owned(),
                object_id: c.get(1)?.as_str()?.to_owned(),
                id: c.get(2)?.as_i64()?,
                hash: c.get(3)?.as_str()?.to_owned(),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_round_trip() {
        let chain = PrunedChain {
            entity_type: "post".into(),
            object_id: "[1,\"en\"]".into(),
            id: 42,
            hash: "ab".repeat(32),
        };
        let data = json!({ CHAINS: encode([chain.clone()]), "removed": 1 });
        assert_eq!(decode(&data).collect::<Vec<_>>(), [chain]);
        assert_eq!(
            decode(&json!({CHAINS: [["x", "1", "no id", "h"]]})).count(),
            0
        );
    }
}
