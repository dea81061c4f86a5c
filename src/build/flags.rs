//! One conversion from buildx's option strings to [`BuildOptions`], shared by `kiln build`
//! (flags) and `kiln bake` (target attributes): both fill a [`RawOptions`] and call
//! [`RawOptions::into_options`], so a value means the same thing and fails with the same message
//! whichever command it came from. Only the label in front of an error differs: the flag
//! (`--output`) for `build`, the target and attribute (`target "app": output`) for bake.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::exporter::ExportSpec;
use super::options::{self, BuildOptions, ContextSource, DockerfileSource, NetworkMode};
use super::{attest, cache, call, entitlements, named_contexts, secrets};
use crate::platform;

/// Where the strings came from, for error labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `kiln build`'s command line.
    Flags,
    /// A bake target, by name.
    Target(String),
}

impl Origin {
    /// A parser's error as is for flags (its message already names the flag), and prefixed
    /// with the target and attribute for bake.
    pub fn attr_error(&self, e: anyhow::Error, attr: &str) -> anyhow::Error {
        match self {
            Origin::Flags => e,
            Origin::Target(_) => e.context(self.label("", attr)),
        }
    }

    /// The label an error from `flag` (build) or `attr` (bake) starts with.
    pub fn label(&self, flag: &str, attr: &str) -> String {
        match self {
            Origin::Flags => format!("--{flag}"),
            Origin::Target(t) => format!("target {t:?}: attribute {attr:?}"),
        }
    }
}

/// Every build option as buildx's strings, before parsing.
#[derive(Debug, Clone)]
pub struct RawOptions {
    pub origin: Origin,
    /// `PATH | URL | -`.
    pub context: String,
    /// `-f`: a path relative to the working directory, or `-`.
    pub file: Option<String>,
    /// bake's `dockerfile-inline`.
    pub dockerfile_inline: Option<String>,
    pub build_contexts: Vec<String>,
    pub tags: Vec<String>,
    pub build_args: Vec<String>,
    pub target: Option<String>,
    pub labels: Vec<String>,
    pub platforms: Vec<String>,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    pub pull: bool,
    pub network: String,
    pub add_hosts: Vec<String>,
    pub shm_size: Option<String>,
    pub cgroup_parent: Option<String>,
    pub ulimits: Vec<String>,
    /// `--load`'s value: `true` for plain `--load`.
    pub load: Option<String>,
    pub push: bool,
    pub outputs: Vec<String>,
    pub cache_from: Vec<String>,
    pub cache_to: Vec<String>,
    pub secrets: Vec<String>,
    pub ssh: Vec<String>,
    pub attest: Vec<String>,
    pub provenance: Option<String>,
    pub sbom: Option<String>,
    pub annotations: Vec<String>,
    pub iidfile: Option<PathBuf>,
    pub metadata_file: Option<PathBuf>,
    /// `--call` value (`build` for a normal build).
    pub call: String,
    pub allow: Vec<String>,
}

impl RawOptions {
    pub fn new(origin: Origin, context: &str) -> RawOptions {
        RawOptions {
            origin,
            context: context.to_string(),
            file: None,
            dockerfile_inline: None,
            build_contexts: Vec::new(),
            tags: Vec::new(),
            build_args: Vec::new(),
            target: None,
            labels: Vec::new(),
            platforms: Vec::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            pull: false,
            network: "default".into(),
            add_hosts: Vec::new(),
            shm_size: None,
            cgroup_parent: None,
            ulimits: Vec::new(),
            load: None,
            push: false,
            outputs: Vec::new(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            secrets: Vec::new(),
            ssh: Vec::new(),
            attest: Vec::new(),
            provenance: None,
            sbom: None,
            annotations: Vec::new(),
            iidfile: None,
            metadata_file: None,
            call: "build".into(),
            allow: Vec::new(),
        }
    }

    /// Parses every value into typed options; each error names where the value came from.
    pub fn into_options(self) -> Result<BuildOptions> {
        let o = &self.origin;
        for t in &self.tags {
            options::validate_tag(t).with_context(|| o.label("tag", "tags"))?;
        }
        for h in &self.add_hosts {
            options::validate_extra_host(h).with_context(|| o.label("add-host", "extra-hosts"))?;
        }
        for u in &self.ulimits {
            options::validate_ulimit(u).with_context(|| o.label("ulimit", "ulimits"))?;
        }
        let outputs = self
            .outputs
            .iter()
            .filter(|v| !v.is_empty())
            .map(|v| {
                ExportSpec::parse(v).with_context(|| match o {
                    Origin::Flags => format!("--output {v:?}"),
                    Origin::Target(_) => o.label("output", "output"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let context =
            ContextSource::parse(&self.context).map_err(|e| o.attr_error(e, "context"))?;
        let dockerfile = match (&self.dockerfile_inline, self.file.as_deref()) {
            (Some(text), _) => DockerfileSource::Inline(text.clone()),
            (None, None) => DockerfileSource::Default,
            (None, Some("-")) => DockerfileSource::Stdin,
            (None, Some(f)) => DockerfileSource::Path(f.into()),
        };
        let attests = attest::Attests::from_flags(
            &self.attest,
            self.provenance.as_deref(),
            self.sbom.as_deref(),
        )
        .map_err(|e| o.attr_error(e, "attest"))?;
        let opts = BuildOptions {
            context: Some(context),
            dockerfile: Some(dockerfile),
            named_contexts: named_contexts::parse(&self.build_contexts)
                .with_context(|| o.label("build-context", "contexts"))?,
            tags: self.tags.clone(),
            build_args: options::parse_build_args(&self.build_args)
                .with_context(|| o.label("build-arg", "args"))?,
            labels: options::parse_labels(&self.labels)
                .with_context(|| o.label("label", "labels"))?,
            target: self.target.clone().filter(|t| !t.is_empty()),
            platforms: platform::parse_explicit_list(&self.platforms)
                .with_context(|| o.label("platform", "platforms"))?,
            no_cache: self.no_cache,
            no_cache_filter: self.no_cache_filter.clone(),
            pull: self.pull,
            network: NetworkMode::parse(&self.network)
                .with_context(|| o.label("network", "network"))?,
            extra_hosts: self.add_hosts.clone(),
            shm_size: self
                .shm_size
                .as_deref()
                .map(options::parse_mem_bytes)
                .transpose()
                .with_context(|| o.label("shm-size", "shm-size"))?,
            cgroup_parent: self.cgroup_parent.clone().filter(|c| !c.is_empty()),
            ulimits: self.ulimits.clone(),
            outputs,
            load: self
                .load
                .as_deref()
                .map(super::load::parse_load)
                .transpose()
                .with_context(|| o.label("load", "load"))?
                .flatten(),
            push: self.push,
            iidfile: self.iidfile.clone(),
            attests,
            annotations: attest::parse_annotations(&self.annotations)
                .with_context(|| o.label("annotation", "annotations"))?,
            cache_from: cache::parse_flags(&self.cache_from, false)
                .with_context(|| o.label("cache-from", "cache-from"))?,
            cache_to: cache::parse_flags(&self.cache_to, true)
                .with_context(|| o.label("cache-to", "cache-to"))?,
            metadata_file: self.metadata_file.clone(),
            secrets: secrets::parse_secrets(&self.secrets)
                .map_err(|e| o.attr_error(e, "secret"))?,
            ssh: secrets::parse_ssh_specs(&secrets::ssh_values_for_context(
                &self.ssh,
                &self.context,
            ))
            .map_err(|e| o.attr_error(e, "ssh"))?,
            call: call::CallFunc::parse(&self.call).map_err(|e| o.attr_error(e, "call"))?,
            allow: entitlements::parse(&self.allow).map_err(|e| o.attr_error(e, "entitlements"))?,
        };
        Ok(opts)
    }
}

/// Joins `key=value` fields into one CSV record as Go's encoding/csv writes it (fields with a
/// comma, quote or newline are quoted), so a structured bake value reads back through the same
/// parser as the flag.
pub fn csv_record<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    fields
        .into_iter()
        .map(|(k, v)| {
            let field = format!("{k}={v}");
            if field.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_flag_or_the_target_attribute() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().to_str().unwrap();
        let mut raw = RawOptions::new(Origin::Flags, ctx);
        raw.shm_size = Some("lots".into());
        let e = format!("{:#}", raw.into_options().unwrap_err());
        assert!(e.starts_with("--shm-size"), "{e}");
        let mut raw = RawOptions::new(Origin::Target("app".into()), ctx);
        raw.outputs = vec!["type=local".into()];
        raw.network = "bridge".into();
        let e = format!("{:#}", raw.into_options().unwrap_err());
        assert!(
            e.starts_with("target \"app\": attribute \"network\""),
            "{e}"
        );
    }

    #[test]
    fn csv_records_round_trip() {
        let r = csv_record([("type", "local"), ("dest", "a,b"), ("x", "q\"")]);
        assert_eq!(r, "type=local,\"dest=a,b\",\"x=q\"\"\"");
        assert_eq!(
            crate::build::exporter::split_csv(&r).unwrap(),
            vec!["type=local", "dest=a,b", "x=q\""]
        );
    }
}
