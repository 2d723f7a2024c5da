//! `warden groups`: a hierarchy of thing groups and their members.

use serde_json::json;

use crate::TestServer;

#[test]
fn groups_nest_and_hold_things() {
    let s = TestServer::start();
    let created =
        s.json(&["groups", "create", "building-1", "--description", "Main site", "--attr", "city=Lyon"]);
    assert_eq!(created["thingGroupName"], "building-1");
    assert_eq!(created["thingGroupArn"], "arn:aws:iot:local:000000000000:thinggroup/building-1");
    let run = s.run(&["groups", "create", "floor-2", "--parent", "building-1"]).success();
    assert!(run.stdout.starts_with("NAME  floor-2\nID    "), "{}", run.stdout);
    assert!(
        run.stdout.ends_with("ARN   arn:aws:iot:local:000000000000:thinggroup/floor-2\n"),
        "{}",
        run.stdout
    );
    s.run(&["groups", "create", "annex"]).success();
    for thing in ["dev-1", "dev-2"] {
        s.run(&["things", "create", thing]).success();
    }

    s.check(&["groups", "add-thing", "floor-2", "dev-1"], "Added thing dev-1 to group floor-2.\n");
    s.check(&["groups", "add-thing", "building-1", "dev-2"], "Added thing dev-2 to group building-1.\n");
    s.check(&["groups", "things", "building-1"], "THING\ndev-2\n");
    s.check(&["groups", "things", "building-1", "--recursive"], "THING\ndev-1\ndev-2\n");
    assert_eq!(s.json(&["groups", "things", "floor-2"]), json!({ "things": ["dev-1"] }));

    s.check(
        &["groups", "list"],
        "
NAME        ARN
annex       arn:aws:iot:local:000000000000:thinggroup/annex
building-1  arn:aws:iot:local:000000000000:thinggroup/building-1
floor-2     arn:aws:iot:local:000000000000:thinggroup/floor-2
",
    );
    s.check(
        &["groups", "list", "--parent", "building-1"],
        "NAME     ARN\nfloor-2  arn:aws:iot:local:000000000000:thinggroup/floor-2\n",
    );
    s.check(
        &["groups", "list", "--prefix", "an"],
        "NAME   ARN\nannex  arn:aws:iot:local:000000000000:thinggroup/annex\n",
    );
    s.check(
        &["groups", "for-thing", "dev-1"],
        "NAME     ARN\nfloor-2  arn:aws:iot:local:000000000000:thinggroup/floor-2\n",
    );

    let described = s.json(&["groups", "describe", "floor-2"]);
    assert_eq!(described["thingGroupMetadata"]["parentGroupName"], "building-1");
    let run = s.run(&["groups", "describe", "building-1"]).success();
    let lines: Vec<&str> = run.stdout.lines().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(
        lines,
        ["NAME", "ID", "ARN", "VERSION", "DESCRIPTION", "ATTRIBUTES", "CREATED"],
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("DESCRIPTION  Main site\nATTRIBUTES   city=Lyon\n"), "{}", run.stdout);

    s.check(&["groups", "remove-thing", "floor-2", "dev-1"], "Removed thing dev-1 from group floor-2.\n");
    s.check(&["groups", "things", "building-1", "--recursive"], "THING\ndev-2\n");
    let run = s.run(&["groups", "delete", "building-1"]).failure(1);
    assert!(run.stderr.starts_with("warden: DeleteConflictException: "), "{}", run.stderr);
    s.check(&["groups", "delete", "floor-2"], "Deleted thing group floor-2.\n");
    s.check(
        &["groups", "list", "--max", "1"],
        "NAME   ARN\nannex  arn:aws:iot:local:000000000000:thinggroup/annex\n(more not shown: raise --max)\n",
    );
}

#[test]
fn things_create_can_join_a_group() {
    let s = TestServer::start();
    s.run(&["groups", "create", "lab"]).success();
    s.check(
        &["things", "create", "dev-1", "--group", "lab"],
        "
THING  dev-1
ARN    arn:aws:iot:local:000000000000:thing/dev-1
GROUP  lab
",
    );
    s.check(&["groups", "things", "lab"], "THING\ndev-1\n");
    let run = s.run(&["things", "create", "dev-2", "--group", "missing"]).failure(1);
    assert!(
        run.stderr.starts_with("warden: thing dev-2 was created, but adding it to group missing failed: ResourceNotFoundException: "),
        "{}",
        run.stderr
    );
}
