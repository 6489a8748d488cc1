//! Group state in the plugin's key-value store: who owns a group and who is in it.
//!
//! Layout (all UTF-8; group names never contain `/`):
//! - `group/<name>/owner` → the owner's number; present exactly while the group exists
//! - `group/<name>/member/<number>` → empty; one key per member, so membership is one lookup
//!   and the member list is one ordered key scan.

use hotline_plugin::Host;

/// Most members a group can have.
pub const MAX_MEMBERS: u32 = 1024;

const MEMBER_INFIX: &str = "/member/";

fn owner_key(name: &str) -> Vec<u8> {
    format!("group/{name}/owner").into_bytes()
}

fn members_prefix(name: &str) -> String {
    format!("group/{name}{MEMBER_INFIX}")
}

fn member_key(name: &str, phone: &str) -> Vec<u8> {
    format!("{}{phone}", members_prefix(name)).into_bytes()
}

/// The group store seen through a host.
pub struct Groups<'h> {
    host: &'h dyn Host,
}

impl<'h> Groups<'h> {
    pub fn new(host: &'h dyn Host) -> Self {
        Groups { host }
    }

    /// The owner of group `name`, or `None` if there is no such group.
    pub fn owner(&self, name: &str) -> Option<String> {
        self.host
            .kv_get(&owner_key(name))
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    pub fn exists(&self, name: &str) -> bool {
        self.owner(name).is_some()
    }

    pub fn is_member(&self, name: &str, phone: &str) -> bool {
        self.host.kv_get(&member_key(name, phone)).is_some()
    }

    /// Members of `name`, sorted (byte order of the numbers).
    pub fn members(&self, name: &str) -> Vec<String> {
        let prefix = members_prefix(name);
        self.host
            .kv_keys(prefix.as_bytes(), MAX_MEMBERS)
            .into_iter()
            .filter_map(|k| {
                let k = String::from_utf8(k).ok()?;
                k.strip_prefix(&prefix).map(str::to_string)
            })
            .collect()
    }

    /// Creates `name` with `owner` as owner and only member. The caller checks it is new.
    pub fn create(&self, name: &str, owner: &str) {
        self.host.kv_set(&owner_key(name), owner.as_bytes());
        self.add(name, owner);
    }

    pub fn add(&self, name: &str, phone: &str) {
        self.host.kv_set(&member_key(name, phone), b"");
    }

    pub fn set_owner(&self, name: &str, owner: &str) {
        self.host.kv_set(&owner_key(name), owner.as_bytes());
    }

    pub fn remove(&self, name: &str, phone: &str) {
        self.host.kv_delete(&member_key(name, phone));
    }

    /// Deletes the group (its owner record and any member keys left).
    pub fn delete(&self, name: &str) {
        for m in self.members(name) {
            self.remove(name, &m);
        }
        self.host.kv_delete(&owner_key(name));
    }
}
