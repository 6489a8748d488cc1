//! `hotline-router`: Hotline's default router plugin — direct messages to E.164 numbers,
//! `#name` groups with owners and members, and the `group-*` commands that manage them.
//!
//! Routing:
//! - `+15551234567` (E.164) → that number.
//! - `#name` → every member except the sender; the sender must be a member.
//! - anything else → rejected with a reason.
//!
//! Commands:
//! - `group-create #name` — creates the group; the sender becomes owner and first member.
//! - `group-add #name +number` — any member may add a number.
//! - `group-remove #name +number` — the owner may remove anyone; a member may remove
//!   themself. When the owner leaves, the first remaining member (in sort order) becomes
//!   owner; when the last member leaves, the group is deleted.
//! - `group-members #name` — members only; one number per line, sorted.
//!
//! Counters: `routed` (messages delivered to a list of recipients) and `rejected`.

pub mod address;
pub mod groups;

use std::collections::BTreeMap;

use hotline_plugin::{Command, Host, MessageMeta, Plugin, Route, Router};

use address::{is_e164, is_group_name, Address};
use groups::{Groups, MAX_MEMBERS};

/// The default router.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultRouter;

hotline_plugin::export_router!(DefaultRouter);

impl Plugin for DefaultRouter {
    fn handle_command(&self, host: &dyn Host, cmd: Command) -> Result<String, String> {
        handle_command(host, &cmd)
    }
}

impl Router for DefaultRouter {
    fn route(&self, host: &dyn Host, message: MessageMeta) -> Route {
        let route = route_one(&Groups::new(host), &mut BTreeMap::new(), &message);
        count(host, std::slice::from_ref(&route));
        route
    }

    /// Looks each group up once per batch: pipelined sends to one group cost one member
    /// scan, and the counters are bumped once per batch.
    fn route_batch(&self, host: &dyn Host, messages: Vec<MessageMeta>) -> Vec<Route> {
        let groups = Groups::new(host);
        let mut cache = BTreeMap::new();
        let routes: Vec<Route> = messages
            .iter()
            .map(|m| route_one(&groups, &mut cache, m))
            .collect();
        count(host, &routes);
        routes
    }
}

fn count(host: &dyn Host, routes: &[Route]) {
    let delivered = routes
        .iter()
        .filter(|r| matches!(r, Route::Deliver(_)))
        .count() as u64;
    let rejected = routes.len() as u64 - delivered;
    if delivered > 0 {
        host.counter_add("routed", delivered);
    }
    if rejected > 0 {
        host.counter_add("rejected", rejected);
    }
}

/// Members of each group looked up so far (`None`: no such group), sorted. A `BTreeMap`, not a
/// `HashMap`: std's `RandomState` would make the component import `wasi:random`.
pub type MemberCache = BTreeMap<String, Option<Vec<String>>>;

/// Where one message goes.
pub fn route_one(groups: &Groups<'_>, cache: &mut MemberCache, m: &MessageMeta) -> Route {
    match address::parse(&m.to) {
        Address::Phone(to) => Route::Deliver(vec![to.to_string()]),
        Address::Group(name) => {
            let members = cache
                .entry(name.to_string())
                .or_insert_with(|| groups.exists(name).then(|| groups.members(name)));
            let Some(members) = members else {
                return Route::Reject(format!("no group #{name}"));
            };
            if members.binary_search(&m.from).is_err() {
                return Route::Reject(format!("you are not a member of #{name}"));
            }
            Route::Deliver(members.iter().filter(|p| **p != m.from).cloned().collect())
        }
        Address::BadGroup(to) => Route::Reject(address::bad_group_reason(to)),
        Address::Unknown(to) => Route::Reject(address::unknown_address_reason(to)),
    }
}

const COMMANDS: &str = "group-create, group-add, group-remove, group-members";

/// Runs a client command.
pub fn handle_command(host: &dyn Host, cmd: &Command) -> Result<String, String> {
    let groups = Groups::new(host);
    let args: Vec<&str> = cmd.args.iter().map(String::as_str).collect();
    match cmd.name.as_str() {
        "group-create" => match args[..] {
            [g] => group_create(&groups, &cmd.from, group_arg(g)?),
            _ => Err(usage("group-create #name")),
        },
        "group-add" => match args[..] {
            [g, phone] => group_add(&groups, &cmd.from, group_arg(g)?, phone),
            _ => Err(usage("group-add #name +number")),
        },
        "group-remove" => match args[..] {
            [g, phone] => group_remove(&groups, &cmd.from, group_arg(g)?, phone),
            _ => Err(usage("group-remove #name +number")),
        },
        "group-members" => match args[..] {
            [g] => group_members(&groups, &cmd.from, group_arg(g)?),
            _ => Err(usage("group-members #name")),
        },
        other => Err(format!(
            "unknown command {other:?}; this router knows {COMMANDS}"
        )),
    }
}

fn usage(u: &str) -> String {
    format!("usage: {u}")
}

/// A group argument: `#name` (the `#` may be left out).
fn group_arg(arg: &str) -> Result<&str, String> {
    let name = arg.strip_prefix('#').unwrap_or(arg);
    if is_group_name(name) {
        Ok(name)
    } else {
        Err(address::bad_group_reason(arg))
    }
}

fn existing_group_as_member(groups: &Groups<'_>, from: &str, name: &str) -> Result<(), String> {
    if !groups.exists(name) {
        return Err(format!("no group #{name}"));
    }
    if !groups.is_member(name, from) {
        return Err(format!("you are not a member of #{name}"));
    }
    Ok(())
}

fn group_create(groups: &Groups<'_>, from: &str, name: &str) -> Result<String, String> {
    if groups.exists(name) {
        return Err(format!("#{name} already exists"));
    }
    groups.create(name, from);
    Ok(format!("created #{name}; you are its owner"))
}

fn group_add(groups: &Groups<'_>, from: &str, name: &str, phone: &str) -> Result<String, String> {
    existing_group_as_member(groups, from, name)?;
    if !is_e164(phone) {
        return Err(format!(
            "{phone:?} is not a phone number in E.164 form (+ and 7-15 digits, like +15551234567)"
        ));
    }
    if groups.is_member(name, phone) {
        return Ok(format!("{phone} is already a member of #{name}"));
    }
    if groups.members(name).len() as u32 >= MAX_MEMBERS {
        return Err(format!("#{name} is full ({MAX_MEMBERS} members)"));
    }
    groups.add(name, phone);
    Ok(format!("added {phone} to #{name}"))
}

fn group_remove(
    groups: &Groups<'_>,
    from: &str,
    name: &str,
    phone: &str,
) -> Result<String, String> {
    let Some(owner) = groups.owner(name) else {
        return Err(format!("no group #{name}"));
    };
    if from != owner && from != phone {
        return Err(if groups.is_member(name, from) {
            format!("only the owner of #{name} can remove other members")
        } else {
            format!("you are not a member of #{name}")
        });
    }
    if !groups.is_member(name, phone) {
        return Err(format!("{phone} is not a member of #{name}"));
    }
    groups.remove(name, phone);
    if phone != owner {
        return Ok(format!("removed {phone} from #{name}"));
    }
    match groups.members(name).into_iter().next() {
        Some(next) => {
            groups.set_owner(name, &next);
            Ok(format!(
                "removed {phone} from #{name}; {next} is now its owner"
            ))
        }
        None => {
            groups.delete(name);
            Ok(format!(
                "removed {phone} from #{name}; it had no members left and was deleted"
            ))
        }
    }
}

fn group_members(groups: &Groups<'_>, from: &str, name: &str) -> Result<String, String> {
    existing_group_as_member(groups, from, name)?;
    Ok(groups.members(name).join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotline_plugin::testing::TestHost;

    const ANN: &str = "+15550000001";
    const BOB: &str = "+15550000002";
    const CAT: &str = "+15550000003";
    const DAN: &str = "+15550000004";

    fn cmd(host: &TestHost, from: &str, line: &str) -> Result<String, String> {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap();
        DefaultRouter.handle_command(host, Command::new(from, name, words))
    }

    fn route(host: &TestHost, from: &str, to: &str) -> Route {
        DefaultRouter.route(host, MessageMeta::new(from, to))
    }

    fn deliver(to: &[&str]) -> Route {
        Route::Deliver(to.iter().map(|s| s.to_string()).collect())
    }

    /// #team: owner ANN, members ANN, BOB, CAT.
    fn team(host: &TestHost) {
        cmd(host, ANN, "group-create #team").unwrap();
        cmd(host, ANN, &format!("group-add #team {BOB}")).unwrap();
        cmd(host, BOB, &format!("group-add #team {CAT}")).unwrap();
    }

    #[test]
    fn direct_messages_go_to_the_number_and_are_counted() {
        let h = TestHost::new();
        assert_eq!(route(&h, ANN, BOB), deliver(&[BOB]));
        assert_eq!(h.counter("routed"), 1);
        assert_eq!(h.counter("rejected"), 0);
    }

    #[test]
    fn other_addresses_are_rejected_with_a_reason() {
        let h = TestHost::new();
        let Route::Reject(r) = route(&h, ANN, "bob") else {
            panic!()
        };
        assert!(r.contains("E.164") && r.contains("#name"), "{r}");
        let Route::Reject(r) = route(&h, ANN, "+0123456789") else {
            panic!()
        };
        assert!(r.contains("cannot deliver"), "{r}");
        let Route::Reject(r) = route(&h, ANN, "#Team!") else {
            panic!()
        };
        assert!(r.contains("not a valid group name"), "{r}");
        assert_eq!(h.counter("rejected"), 3);
        assert_eq!(h.counter("routed"), 0);
    }

    #[test]
    fn group_messages_fan_out_to_members_except_the_sender() {
        let h = TestHost::new();
        team(&h);
        assert_eq!(route(&h, BOB, "#team"), deliver(&[ANN, CAT]));
        assert_eq!(route(&h, ANN, "#team"), deliver(&[BOB, CAT]));
    }

    #[test]
    fn group_messages_from_outsiders_and_to_unknown_groups_are_rejected() {
        let h = TestHost::new();
        team(&h);
        assert_eq!(
            route(&h, DAN, "#team"),
            Route::Reject("you are not a member of #team".into())
        );
        assert_eq!(
            route(&h, ANN, "#nope"),
            Route::Reject("no group #nope".into())
        );
    }

    #[test]
    fn create_makes_the_creator_owner_and_refuses_duplicates() {
        let h = TestHost::new();
        assert_eq!(
            cmd(&h, ANN, "group-create #team"),
            Ok("created #team; you are its owner".into())
        );
        assert_eq!(
            cmd(&h, BOB, "group-create #team"),
            Err("#team already exists".into())
        );
        assert_eq!(cmd(&h, ANN, "group-members #team"), Ok(ANN.into()));
        assert_eq!(Groups::new(&h).owner("team").as_deref(), Some(ANN));
        // The # may be left out; invalid names are refused.
        assert!(cmd(&h, ANN, "group-create ops").is_ok());
        assert!(cmd(&h, ANN, "group-create #Ops")
            .unwrap_err()
            .contains("not a valid group name"));
        assert_eq!(
            cmd(&h, ANN, "group-create"),
            Err("usage: group-create #name".into())
        );
    }

    #[test]
    fn members_add_numbers_checked_as_e164_outsiders_cannot() {
        let h = TestHost::new();
        team(&h);
        assert_eq!(
            cmd(&h, DAN, &format!("group-add #team {DAN}")),
            Err("you are not a member of #team".into())
        );
        assert!(cmd(&h, CAT, "group-add #team 5550000004")
            .unwrap_err()
            .contains("E.164"));
        assert_eq!(
            cmd(&h, CAT, &format!("group-add #team {BOB}")),
            Ok(format!("{BOB} is already a member of #team"))
        );
        assert_eq!(
            cmd(&h, CAT, &format!("group-add #ghost {DAN}")),
            Err("no group #ghost".into())
        );
        assert_eq!(
            cmd(&h, CAT, &format!("group-add #team {DAN}")),
            Ok(format!("added {DAN} to #team"))
        );
        assert_eq!(route(&h, DAN, "#team"), deliver(&[ANN, BOB, CAT]));
    }

    #[test]
    fn members_lists_sorted_one_per_line_for_members_only() {
        let h = TestHost::new();
        cmd(&h, CAT, "group-create #team").unwrap();
        cmd(&h, CAT, &format!("group-add #team {ANN}")).unwrap();
        cmd(&h, CAT, &format!("group-add #team {BOB}")).unwrap();
        assert_eq!(
            cmd(&h, BOB, "group-members #team"),
            Ok(format!("{ANN}\n{BOB}\n{CAT}"))
        );
        assert_eq!(
            cmd(&h, DAN, "group-members #team"),
            Err("you are not a member of #team".into())
        );
        assert_eq!(
            cmd(&h, DAN, "group-members #nope"),
            Err("no group #nope".into())
        );
    }

    #[test]
    fn owner_removes_anyone_members_only_themselves() {
        let h = TestHost::new();
        team(&h);
        assert_eq!(
            cmd(&h, BOB, &format!("group-remove #team {CAT}")),
            Err("only the owner of #team can remove other members".into())
        );
        assert_eq!(
            cmd(&h, DAN, &format!("group-remove #team {CAT}")),
            Err("you are not a member of #team".into())
        );
        assert_eq!(
            cmd(&h, ANN, &format!("group-remove #team {DAN}")),
            Err(format!("{DAN} is not a member of #team"))
        );
        assert_eq!(
            cmd(&h, BOB, &format!("group-remove #team {BOB}")),
            Ok(format!("removed {BOB} from #team"))
        );
        assert_eq!(
            cmd(&h, ANN, &format!("group-remove #team {CAT}")),
            Ok(format!("removed {CAT} from #team"))
        );
        assert_eq!(route(&h, ANN, "#team"), deliver(&[]));
        assert_eq!(
            route(&h, CAT, "#team"),
            Route::Reject("you are not a member of #team".into())
        );
    }

    #[test]
    fn owner_leaving_hands_over_and_last_member_leaving_deletes_the_group() {
        let h = TestHost::new();
        team(&h);
        assert_eq!(
            cmd(&h, ANN, &format!("group-remove #team {ANN}")),
            Ok(format!("removed {ANN} from #team; {BOB} is now its owner"))
        );
        // BOB now owns the group and may remove CAT.
        cmd(&h, BOB, &format!("group-remove #team {CAT}")).unwrap();
        assert!(cmd(&h, BOB, &format!("group-remove #team {BOB}"))
            .unwrap()
            .contains("deleted"));
        assert_eq!(
            route(&h, BOB, "#team"),
            Route::Reject("no group #team".into())
        );
        assert!(h.kv_snapshot().is_empty(), "{:?}", h.kv_snapshot());
        // The name is free again.
        assert!(cmd(&h, CAT, "group-create #team").is_ok());
    }

    #[test]
    fn unknown_commands_and_wrong_arity_are_errors() {
        let h = TestHost::new();
        let e = cmd(&h, ANN, "group-rename #a #b").unwrap_err();
        assert!(
            e.contains("unknown command") && e.contains("group-create"),
            "{e}"
        );
        assert_eq!(
            cmd(&h, ANN, "group-add #team"),
            Err("usage: group-add #name +number".into())
        );
    }

    #[test]
    fn batch_answers_in_order_like_route_and_counts_once_per_kind() {
        let h = TestHost::new();
        team(&h);
        let batch = vec![
            MessageMeta::new(ANN, "#team"),
            MessageMeta::new(DAN, "#team"),
            MessageMeta::new(BOB, CAT),
            MessageMeta::new(CAT, "#team"),
            MessageMeta::new(ANN, "#ghost"),
            MessageMeta::new(ANN, "nobody"),
        ];
        let one_by_one: Vec<Route> = {
            let h2 = TestHost::new();
            team(&h2);
            batch
                .iter()
                .map(|m| DefaultRouter.route(&h2, m.clone()))
                .collect()
        };
        let routes = DefaultRouter.route_batch(&h, batch);
        assert_eq!(routes, one_by_one);
        assert_eq!(routes[0], deliver(&[BOB, CAT]));
        assert_eq!(routes[3], deliver(&[ANN, BOB]));
        assert_eq!(h.counter("routed"), 3);
        assert_eq!(h.counter("rejected"), 3);
    }

    #[test]
    fn groups_are_capped() {
        let h = TestHost::new();
        cmd(&h, ANN, "group-create #big").unwrap();
        let g = Groups::new(&h);
        for i in 1..MAX_MEMBERS {
            g.add("big", &format!("+1666{i:07}"));
        }
        assert_eq!(g.members("big").len() as u32, MAX_MEMBERS);
        assert!(cmd(&h, ANN, &format!("group-add #big {BOB}"))
            .unwrap_err()
            .contains("full"));
    }
}
