//! Names as Kubernetes and Helm accept them, checked before they reach a tool's command line.

/// Helm's longest release name (its names end up in labels and resource names of 63 characters).
pub(super) const MAX_RELEASE_NAME: usize = 53;
/// Kubernetes' longest DNS-1123 label (a namespace name).
const MAX_LABEL: usize = 63;

/// Why `name` is not a Helm release name (a DNS-1123 subdomain of at most 53 characters: lowercase
/// letters, digits, `-` and `.`, starting and ending with a letter or digit), `None` when it is.
pub(super) fn helm_release_name_error(name: &str) -> Option<String> {
    if name.len() > MAX_RELEASE_NAME {
        return Some(format!(
            "longer than {MAX_RELEASE_NAME} characters ({})",
            name.len()
        ));
    }
    name.split('.').find_map(label_error)
}

/// Why `name` is not a DNS-1123 label (a namespace name), `None` when it is.
pub(crate) fn dns1123_label_error(name: &str) -> Option<String> {
    if name.len() > MAX_LABEL {
        return Some(format!(
            "longer than {MAX_LABEL} characters ({})",
            name.len()
        ));
    }
    label_error(name)
}

/// Kubernetes' longest DNS-1123 subdomain (most object names, e.g. a ServiceAccount's).
const MAX_SUBDOMAIN: usize = 253;

/// Why `name` is not a DNS-1123 subdomain (e.g. a ServiceAccount name: lowercase letters, digits,
/// `-` and `.`, each dot-separated part starting and ending with a letter or digit), `None` when it
/// is.
pub(crate) fn dns1123_subdomain_error(name: &str) -> Option<String> {
    if name.len() > MAX_SUBDOMAIN {
        return Some(format!(
            "longer than {MAX_SUBDOMAIN} characters ({})",
            name.len()
        ));
    }
    name.split('.').find_map(label_error)
}

fn label_error(label: &str) -> Option<String> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if label.is_empty() {
        return Some("empty, or with an empty part between dots".into());
    }
    if let Some(c) = label.chars().find(|&c| !alphanumeric(c) && c != '-') {
        return Some(format!(
            "{c:?} is not allowed (only lowercase letters, digits, '-' and '.')"
        ));
    }
    let (first, last) = (label.chars().next(), label.chars().last());
    if !first.is_some_and(alphanumeric) || !last.is_some_and(alphanumeric) {
        return Some("must start and end with a lowercase letter or digit".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names_as_helm_accepts_them() {
        for good in ["shop", "shop-2", "a", "shop.v2", &"a".repeat(53)] {
            assert_eq!(helm_release_name_error(good), None, "{good}");
        }
        for bad in [
            "",
            "-shop",
            "shop-",
            "Shop",
            "sh_op",
            "a..b",
            ".a",
            "--set-file=t=/var/run/secrets/kubernetes.io/serviceaccount/token",
            "shop post",
            &"a".repeat(54),
        ] {
            assert!(helm_release_name_error(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn namespaces_are_dns_1123_labels() {
        assert_eq!(dns1123_label_error("team-a"), None);
        assert_eq!(dns1123_label_error(&"a".repeat(63)), None);
        for bad in ["team.a", "-a", "A", &"a".repeat(64), "--kubeconfig=/x"] {
            assert!(dns1123_label_error(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn object_names_are_dns_1123_subdomains() {
        for good in ["deployer", "ci.deployer-2", &"a".repeat(63)] {
            assert_eq!(dns1123_subdomain_error(good), None, "{good}");
        }
        for bad in [
            "",
            "Deployer",
            "a:b",
            "a..b",
            "-a",
            "a\nb",
            &"a".repeat(254),
        ] {
            assert!(dns1123_subdomain_error(bad).is_some(), "{bad}");
        }
    }
}
