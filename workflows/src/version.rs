//! Versions as image tags and releases spell them, compared as upstream means them: the
//! one parser and order every upgrade plan (containers, K3s, charts) and the K3s upgrade
//! itself use. It names nothing else of this crate, so any module may use it.

use std::cmp::Ordering;

/// A version as image tags spell it: `v2.1.20`, `4.7.3`, `2.1.0-rc1`. Numbers compare in
/// order (a missing one is 0); a pre-release (`-rc1`) comes before its release.
#[derive(Clone, Debug)]
pub struct Version {
    numbers: Vec<u64>,
    pre: Option<String>,
}

impl Version {
    /// None when `text` is no version (`latest`, a digest).
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let (release, pre) = match text.split_once('-') {
            Some((release, pre)) => (release, Some(pre.to_string())),
            None => (text, None),
        };
        let numbers = release
            .split('.')
            .map(|n| n.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some(Version { numbers, pre })
    }

    /// Its major and minor numbers (0 where missing).
    pub fn minor(&self) -> (u64, u64) {
        let at = |i: usize| self.numbers.get(i).copied().unwrap_or(0);
        (at(0), at(1))
    }
}

/// Why going from `running` to `target` skips a minor version, for a component that goes
/// one minor version at a time; none when it does not (patches, and the next minor).
pub fn skipped_minor(running: &Version, target: &Version) -> Option<(u64, u64)> {
    let ((from_major, from_minor), to) = (running.minor(), target.minor());
    (to > (from_major, from_minor + 1)).then_some((from_major, from_minor + 1))
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.numbers.len().max(other.numbers.len());
        let at = |v: &Version, i: usize| v.numbers.get(i).copied().unwrap_or(0);
        for i in 0..len {
            match at(self, i).cmp(&at(other, i)) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match (&self.pre, &other.pre) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => a.cmp(b),
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A release as an image tag spells it: a tag has no `+`, so K3s's `v1.32.4+k3s1` is
/// `v1.32.4-k3s1`, as K3s's own images (`rancher/k3s:v1.32.4-k3s1`) spell it.
pub fn tag_of_release(release: &str) -> String {
    release.replace('+', "-")
}

/// A release as its project spells it (K3s's `v1.32.4+k3s1`), read as its tag's version.
pub fn of_release(release: &str) -> Option<Version> {
    Version::parse(&tag_of_release(release))
}

/// The tag of an image reference (`v2.1.20` of `ghcr.io/project-zot/zot:v2.1.20`); none
/// when it has none (a port's colon is not a tag's).
pub fn tag_of(image: &str) -> Option<&str> {
    let image = image.split('@').next().unwrap_or(image);
    let (name, tag) = image.rsplit_once(':')?;
    (!tag.contains('/') && !name.is_empty()).then_some(tag)
}

/// `image` with its tag (and digest) replaced by `tag`.
pub fn with_tag(image: &str, tag: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    let name = match tag_of(image) {
        Some(old) => &image[..image.len() - old.len() - 1],
        None => image,
    };
    format!("{name}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_upstream_tags_mean_them() {
        let v = |t: &str| Version::parse(t).expect(t);
        assert!(v("4.7.3") < v("4.8.0"));
        assert!(v("v2.1.20") > v("2.1.9"));
        assert_eq!(v("v2.1.0"), v("2.1"));
        assert!(v("2.1.0-rc1") < v("2.1.0"));
        assert!(Version::parse("latest").is_none());
        assert!(Version::parse("").is_none());
    }

    #[test]
    fn a_release_reads_as_its_tag() {
        assert_eq!(tag_of_release("v1.32.4+k3s1"), "v1.32.4-k3s1");
        assert_eq!(tag_of_release("4.7.3"), "4.7.3");
        let release = |t: &str| of_release(t).expect(t);
        assert!(release("v1.32.4+k3s1") > release("v1.31.9+k3s1"));
        assert!(release("v1.32.4+k3s2") > release("v1.32.4+k3s1"));
        assert!(of_release("latest").is_none());
    }

    #[test]
    fn a_tag_is_found_past_a_registry_port_and_replaced() {
        assert_eq!(tag_of("ghcr.io/project-zot/zot:v2.1.20"), Some("v2.1.20"));
        assert_eq!(tag_of("mirror.lan:5000/openbao/openbao"), None);
        assert_eq!(
            tag_of("mirror.lan:5000/pdns:4.8.0@sha256:ab"),
            Some("4.8.0")
        );
        assert_eq!(
            with_tag("mirror.lan:5000/pdns:4.7.3", "4.8.0"),
            "mirror.lan:5000/pdns:4.8.0"
        );
        assert_eq!(
            with_tag("openbao/openbao", "2.1.0"),
            "openbao/openbao:2.1.0"
        );
    }

    #[test]
    fn one_minor_at_a_time_allows_patches_and_the_next_minor_only() {
        let v = |t: &str| Version::parse(t).expect(t);
        let skip = |a: &str, b: &str| skipped_minor(&v(a), &v(b));
        assert_eq!(skip("v1.31.9-k3s1", "v1.31.12-k3s1"), None);
        assert_eq!(skip("v1.31.9-k3s1", "v1.32.4-k3s1"), None);
        assert_eq!(skip("v1.31.9-k3s1", "v1.33.1-k3s1"), Some((1, 32)));
        assert_eq!(skip("v1.31.9-k3s1", "v2.0.0-k3s1"), Some((1, 32)));
        assert!(v("v1.32.4-k3s2") > v("v1.32.4-k3s1"));
    }
}
