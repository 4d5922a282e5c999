//! The pod template hash that names a revision's ReplicaSet (`<rollout>-<hash>`) and labels its pods
//! with [`POD_TEMPLATE_HASH_LABEL`].
//!
//! The value must be the same in every process and every version of this binary: a controller
//! restarted (or upgraded) mid-rollout must find the ReplicaSet it already created instead of making
//! a duplicate (docs/behaviour.md R10). So it is FNV-1a 32-bit, as Kubernetes' and Argo's
//! `ComputeHash`, over the JSON of the template. That JSON is stable: k8s-openapi serializes struct
//! fields in a fixed order, skips unset optional fields (so a k8s-openapi upgrade that adds fields
//! changes nothing for templates that do not use them), and keeps maps in `BTreeMap`s (sorted
//! keys).

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::rollout::POD_TEMPLATE_HASH_LABEL;

/// Kubernetes' `rand.SafeEncodeString` alphabet: no vowels (no words) and no confusable characters.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// The `rollouts-pod-template-hash` of `template`, with `collision_count` (the Rollout's
/// `status.collisionCount`) folded in so that a name collision can be escaped by counting up.
///
/// The hash label itself is ignored, so the template read back from a ReplicaSet (which carries the
/// label) hashes to the same value as the Rollout's template (which does not).
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hasher = Fnv1a32::new();
    hasher.write(&canonical_json(template));
    if let Some(count) = collision_count {
        hasher.write(&collision_bytes(count));
    }
    safe_encode(&hasher.finish().to_string())
}

/// The template without the hash label, as JSON bytes.
fn canonical_json(template: &PodTemplateSpec) -> Vec<u8> {
    let mut template = template.clone();
    if let Some(metadata) = template.metadata.as_mut()
        && let Some(labels) = metadata.labels.as_mut()
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        // An emptied map must hash like an absent one, or removing the only label would matter.
        if labels.is_empty() {
            metadata.labels = None;
        }
    }
    // Serializing k8s-openapi types cannot fail (no non-string map keys, no failing Serialize
    // impls); an empty input in that impossible case still yields a deterministic hash.
    serde_json::to_vec(&template).unwrap_or_default()
}

/// What Kubernetes writes for the collision count: the count as a little-endian `uint32` in an
/// 8-byte buffer (`binary.LittleEndian.PutUint32(make([]byte, 8), uint32(count))`).
fn collision_bytes(count: i32) -> [u8; 8] {
    let mut bytes = [0u8; 8];
    // `as` reinterprets a negative count's bits exactly like Go's `uint32(count)`.
    bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
    bytes
}

/// Kubernetes' `rand.SafeEncodeString`: each byte replaced by `alphabet[byte % len]`.
fn safe_encode(text: &str) -> String {
    text.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// FNV-1a, 32 bits (Go's `hash/fnv.New32a`). Written out because it is ten lines and its exact
/// output is part of the ReplicaSet naming contract.
struct Fnv1a32(u32);

impl Fnv1a32 {
    fn new() -> Self {
        Self(FNV_OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u32::from(byte);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    fn finish(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    use super::*;

    fn fixture() -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {"containers": [{
                "name": "web",
                "image": "registry.example.com/web:1.4.0",
                "ports": [{"containerPort": 8080}],
                "env": [{"name": "LOG_LEVEL", "value": "info"}],
            }]},
        }))
        .unwrap()
    }

    fn fnv(bytes: &[u8]) -> u32 {
        let mut h = Fnv1a32::new();
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        assert_eq!(fnv(b""), 0x811c_9dc5);
        assert_eq!(fnv(b"a"), 0xe40c_292c);
        assert_eq!(fnv(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn safe_encoding_is_kubernetes_alphabet() {
        // Digits map to 4..9 and b, c, d, f, as in the names Kubernetes and Argo produce.
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
        assert_eq!(collision_bytes(1), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(collision_bytes(-1), [255, 255, 255, 255, 0, 0, 0, 0]);
    }

    /// Golden values: if these change, every running Rollout would get a new ReplicaSet after an
    /// upgrade. Change them only on purpose.
    #[test]
    fn golden_values() {
        assert_eq!(pod_template_hash(&fixture(), None), GOLDEN_NONE);
        assert_eq!(pod_template_hash(&fixture(), Some(1)), GOLDEN_ONE);
        assert_eq!(
            pod_template_hash(&PodTemplateSpec::default(), None),
            GOLDEN_EMPTY
        );
    }

    const GOLDEN_NONE: &str = "5f8b6557f4";
    const GOLDEN_ONE: &str = "688957547f";
    const GOLDEN_EMPTY: &str = "5859f96865";

    #[test]
    fn deterministic_and_shaped_like_argo() {
        let a = pod_template_hash(&fixture(), None);
        assert_eq!(a, pod_template_hash(&fixture(), None));
        assert!((1..=10).contains(&a.len()), "{a}");
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{a}");
    }

    #[test]
    fn insensitive_to_the_hash_label() {
        let plain = fixture();
        let mut labelled = fixture();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH_LABEL.into(), "abc".into());
        assert_eq!(
            pod_template_hash(&plain, None),
            pod_template_hash(&labelled, None)
        );

        // A template whose only label is the hash label hashes like one without labels.
        let mut only_hash = PodTemplateSpec {
            metadata: Some(Default::default()),
            spec: None,
        };
        let mut no_labels = only_hash.clone();
        only_hash.metadata.as_mut().unwrap().labels =
            Some([(POD_TEMPLATE_HASH_LABEL.to_string(), "x".to_string())].into());
        assert_eq!(
            pod_template_hash(&only_hash, None),
            pod_template_hash(&no_labels, None)
        );
        no_labels.metadata.as_mut().unwrap().labels = Some(Default::default());
        assert_eq!(
            pod_template_hash(&only_hash, None),
            pod_template_hash(&no_labels, None)
        );
    }

    #[test]
    fn sensitive_to_image_labels_and_collision_count() {
        let base = pod_template_hash(&fixture(), None);
        let mut image = fixture();
        image.spec.as_mut().unwrap().containers[0].image =
            Some("registry.example.com/web:1.5.0".into());
        assert_ne!(pod_template_hash(&image, None), base);

        let mut label = fixture();
        label
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "front".into());
        assert_ne!(pod_template_hash(&label, None), base);

        let one = pod_template_hash(&fixture(), Some(1));
        let two = pod_template_hash(&fixture(), Some(2));
        assert_ne!(one, base);
        assert_ne!(one, two);
        // Some(0) differs from None, as in Kubernetes (the bytes are still written).
        assert_ne!(pod_template_hash(&fixture(), Some(0)), base);
    }
}
