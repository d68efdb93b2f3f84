//! Objects applied server-side (manager `foundry`), as given: what a chart's install does
//! after the chart is deployed (cert-manager's ClusterIssuer, whose kind the chart's CRDs
//! bring). Each object carries the hash of what was applied in an annotation, so a second
//! apply of the same objects sends nothing, and the probe can tell the effect is there.

use ::kube::Api;
use ::kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{KubeAccess, api_error};

const MANAGER: &str = "foundry";
const SPEC_HASH: &str = "foundry.dev/spec-hash";

/// One object: its kind as the API serves it, where it lives, and its fields (everything
/// but `apiVersion`, `kind` and `metadata.name`/`namespace`, which come from here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KubeObject {
    /// `cert-manager.io/v1`, or `v1` for the core group.
    pub api_version: String,
    pub kind: String,
    /// The resource's plural, as the API's paths name it (`clusterissuers`).
    pub plural: String,
    /// None for a cluster-scoped object.
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    /// The object's other top-level fields (`spec`, `data`), and `metadata.labels` and
    /// `metadata.annotations` when given.
    pub body: Value,
}

impl KubeObject {
    /// `ClusterIssuer foundry-ca`, `Secret cert-manager/ca`.
    pub fn said(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    fn resource(&self) -> ApiResource {
        let (group, version) = match self.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.api_version.as_str()),
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, &self.kind),
            &self.plural,
        )
    }

    fn api(&self, client: &::kube::Client) -> Api<DynamicObject> {
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.resource()),
            None => Api::all_with(client.clone(), &self.resource()),
        }
    }

    fn hash(&self) -> String {
        let whole = json!([
            self.api_version,
            self.kind,
            self.namespace,
            self.name,
            self.body
        ]);
        hex::encode(Sha256::digest(whole.to_string().as_bytes()))
    }

    /// The whole object as applied, its hash among its annotations.
    fn document(&self) -> Value {
        let mut doc = match &self.body {
            Value::Object(map) => Value::Object(map.clone()),
            _ => json!({}),
        };
        let mut metadata = doc
            .get("metadata")
            .cloned()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        metadata["name"] = json!(self.name);
        if let Some(ns) = &self.namespace {
            metadata["namespace"] = json!(ns);
        }
        if !metadata["annotations"].is_object() {
            metadata["annotations"] = json!({});
        }
        metadata["annotations"][SPEC_HASH] = json!(self.hash());
        doc["metadata"] = metadata;
        doc["apiVersion"] = json!(self.api_version);
        doc["kind"] = json!(self.kind);
        doc
    }
}

/// Applies `objects` in order, each only when its live copy does not carry its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyObjects {
    #[serde(flatten)]
    pub access: KubeAccess,
    pub objects: Vec<KubeObject>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyObjectsOutput {
    /// The objects sent (`ClusterIssuer foundry-ca`); empty when every one was current.
    pub applied: Vec<String>,
}

impl ApplyObjects {
    /// Whether `object`'s live copy carries the hash of what is applied now.
    async fn current(
        &self,
        client: &::kube::Client,
        object: &KubeObject,
    ) -> Result<bool, ActivityError> {
        let live = object
            .api(client)
            .get_opt(&object.name)
            .await
            .map_err(|e| self.error(&format!("reading {}", object.said()), e))?;
        let hash = live
            .as_ref()
            .and_then(|o| o.metadata.annotations.as_ref())
            .and_then(|a| a.get(SPEC_HASH));
        Ok(hash.map(String::as_str) == Some(object.hash().as_str()))
    }

    /// A kube error, with a 404 transient: a kind a chart's CRDs bring is served a
    /// moment after the chart is deployed.
    fn error(&self, doing: &str, e: ::kube::Error) -> ActivityError {
        let place = self.access.place();
        match e {
            ::kube::Error::Api(status) if status.code == 404 => ActivityError::transient(format!(
                "{doing} at {place}: 404 {}: {}\nhint: the kind is not served (yet): its \
                 chart's CRDs are not installed, or not established",
                status.reason, status.message
            )),
            other => api_error(doing, &place, other),
        }
    }
}

impl Activity for ApplyObjects {
    type Output = ApplyObjectsOutput;

    fn kind(&self) -> &'static str {
        "kube-apply"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<ApplyObjectsOutput>, ActivityError> {
        let client = self.access.client(cx).await?;
        for object in &self.objects {
            if !self.current(&client, object).await? {
                return Ok(None);
            }
        }
        // Applied by the attempt in doubt, or found so: either way nothing is left to do.
        Ok(Some(ApplyObjectsOutput::default()))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ApplyObjectsOutput, ActivityError> {
        let client = self.access.client(cx).await?;
        let mut applied = Vec::new();
        for object in &self.objects {
            if self.current(&client, object).await? {
                continue;
            }
            object
                .api(&client)
                .patch(
                    &object.name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&object.document()),
                )
                .await
                .map_err(|e| self.error(&format!("applying {}", object.said()), e))?;
            applied.push(object.said());
        }
        Ok(ApplyObjectsOutput { applied })
    }
}

/// `object` as it is now, in full; none when there is no such object.
pub async fn object_live(
    cx: &ActivityCx,
    access: &KubeAccess,
    object: &KubeObject,
) -> Result<Option<Value>, ActivityError> {
    let client = access.client(cx).await?;
    let live = object
        .api(&client)
        .get_opt(&object.name)
        .await
        .map_err(|e| api_error(&format!("reading {}", object.said()), &access.place(), e))?;
    live.map(|o| {
        serde_json::to_value(o)
            .map_err(|e| ActivityError::permanent(format!("reading {}: {e}", object.said())))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_object_and_carries_its_hash() {
        let object = KubeObject {
            api_version: "cert-manager.io/v1".into(),
            kind: "ClusterIssuer".into(),
            plural: "clusterissuers".into(),
            namespace: None,
            name: "foundry-ca".into(),
            body: json!({"spec": {"selfSigned": {}}, "metadata": {"labels": {"a": "b"}}}),
        };
        let doc = object.document();
        assert_eq!(doc["apiVersion"], "cert-manager.io/v1");
        assert_eq!(doc["metadata"]["name"], "foundry-ca");
        assert_eq!(doc["metadata"]["labels"]["a"], "b");
        assert_eq!(
            doc["metadata"]["annotations"][SPEC_HASH],
            json!(object.hash())
        );
        assert!(doc["metadata"].get("namespace").is_none());
        let mut other = object.clone();
        other.body["spec"] = json!({"ca": {"secretName": "x"}});
        assert_ne!(other.hash(), object.hash());
    }
}
