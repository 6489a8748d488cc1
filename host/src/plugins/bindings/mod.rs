//! Host-side bindings of every plugin contract version the broker serves, after Zed's
//! extension host: one module per frozen `wit/<version>/` folder (`v0_1_0`, `v0_2_0`), the
//! newest re-exported as [`latest`], and [`ContractVersion`], which tells from a component's
//! imports and exports which version it was built against. The rest of the plugin runtime
//! speaks the newest types only; an older version's module converts to and from them.
//!
//! Adding a version: copy `wit/<newest>` to a new folder and change it there, add a module
//! here with its `bindgen!`, make the previous newest module convert into the new types,
//! add a [`ContractVersion`] variant, and raise `hotline_plugin::CONTRACT_VERSION`.

pub mod v0_1_0;
pub mod v0_2_0;

/// The newest contract's bindings: what the host implements and the runtime calls with.
pub use v0_2_0 as latest;

pub use latest::types;

/// The newest contract version (`hotline:plugin@CONTRACT_VERSION`), the one new plugins,
/// the SDK and the templates are built against; defined once, in the guest SDK.
pub const CONTRACT_VERSION: &str = hotline_plugin::CONTRACT_VERSION;

/// A contract version the broker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum ContractVersion {
    #[serde(rename = "0.1.0")]
    V0_1_0,
    #[serde(rename = "0.2.0")]
    V0_2_0,
}

impl ContractVersion {
    /// Every served version, oldest first.
    pub const ALL: [ContractVersion; 2] = [ContractVersion::V0_1_0, ContractVersion::V0_2_0];

    /// `0.1.0`, `0.2.0`: the WIT package version.
    pub fn name(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => "0.1.0",
            ContractVersion::V0_2_0 => "0.2.0",
        }
    }

    fn from_name(name: &str) -> Option<ContractVersion> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The version a component was built against, from the `hotline:plugin/<interface>@<version>`
    /// names it imports and exports. Refuses a component that names none, one this broker
    /// does not serve, or several.
    pub fn detect(component: &wasmtime::component::Component, engine: &wasmtime::Engine) -> anyhow::Result<ContractVersion> {
        let ty = component.component_type();
        let names: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).chain(ty.exports(engine).map(|(n, _)| n.to_string())).collect();
        Self::from_names(names.iter().map(String::as_str))
    }

    fn from_names<'a>(names: impl Iterator<Item = &'a str>) -> anyhow::Result<ContractVersion> {
        let mut found: Vec<&str> = names
            .filter_map(|n| n.strip_prefix("hotline:plugin/"))
            .map(|rest| rest.split_once('@').map_or("(none)", |(_, v)| v))
            .collect();
        found.sort_unstable();
        found.dedup();
        let served = Self::ALL.map(Self::name).join(", ");
        match found.as_slice() {
            [] => anyhow::bail!("imports and exports no hotline:plugin interface: not a Hotline plugin (this broker serves contract versions {served})"),
            [one] => Self::from_name(one).ok_or_else(|| {
                anyhow::anyhow!("built against plugin contract version {one}, which this broker does not serve (it serves {served})")
            }),
            many => anyhow::bail!("mixes plugin contract versions {}: build it against one (this broker serves {served})", many.join(", ")),
        }
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_is_the_sdks_and_its_folder_says_so() {
        assert_eq!(ContractVersion::ALL.last().unwrap().name(), CONTRACT_VERSION);
        for version in ContractVersion::ALL {
            let path = format!("{}/../wit/{version}/plugin.wit", env!("CARGO_MANIFEST_DIR"));
            let wit = std::fs::read_to_string(&path).unwrap();
            assert!(wit.contains(&format!("package hotline:plugin@{version};")), "{path}");
        }
        let newest = format!("{}/../wit/{CONTRACT_VERSION}/plugin.wit", env!("CARGO_MANIFEST_DIR"));
        assert_eq!(std::fs::read_to_string(newest).unwrap(), crate::scaffold::WIT, "the templates copy the newest contract");
    }

    #[test]
    fn versions_are_told_from_interface_names() {
        let names = ["wasi:cli/environment@0.2.6", "hotline:plugin/kv@0.1.0", "hotline:plugin/routing@0.1.0"];
        assert_eq!(ContractVersion::from_names(names.into_iter()).unwrap(), ContractVersion::V0_1_0);
        let names = ["hotline:plugin/log@0.2.0", "hotline:plugin/lifecycle@0.2.0"];
        assert_eq!(ContractVersion::from_names(names.into_iter()).unwrap(), ContractVersion::V0_2_0);
        let e = ContractVersion::from_names(["hotline:plugin/log@0.9.0"].into_iter()).unwrap_err().to_string();
        assert!(e.contains("0.9.0") && e.contains("0.1.0, 0.2.0"), "{e}");
        let e = ContractVersion::from_names(["hotline:plugin/log@0.1.0", "hotline:plugin/routing@0.2.0"].into_iter()).unwrap_err().to_string();
        assert!(e.contains("mixes"), "{e}");
        let e = ContractVersion::from_names(["wasi:io/streams@0.2.6"].into_iter()).unwrap_err().to_string();
        assert!(e.contains("not a Hotline plugin"), "{e}");
    }
}
