//! What the user sees when something is wrong: API errors in AWS's terms, a missing token, an
//! unreachable server, bad usage; and where the token comes from when none is given.

use crate::{TestServer, warden, warden_with};

#[test]
fn api_errors_print_the_aws_error_type_and_exit_1() {
    let s = TestServer::start();
    let run = s.run(&["things", "describe", "nope"]).failure(1);
    assert_eq!(run.stderr, "warden: ResourceNotFoundException: thing nope does not exist\n");
    let run = s.run(&["things", "describe", "nope", "--output", "json"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceNotFoundException: "), "{}", run.stderr);
    s.run(&["things", "create", "dev-1"]).success();
    // As in AWS, creating the same thing again succeeds; with other attributes it is a conflict.
    s.run(&["things", "create", "dev-1"]).success();
    let run = s.run(&["things", "create", "dev-1", "--attr", "a=b"]).failure(1);
    assert!(run.stderr.starts_with("warden: ResourceAlreadyExistsException: "), "{}", run.stderr);
    let run = s.run(&["things", "create", "no/slash"]).failure(1);
    assert!(
        run.stderr.starts_with("warden: InvalidRequestException: thingName \"no/slash\""),
        "{}",
        run.stderr
    );

    let endpoint = s.endpoint.as_str();
    let run = warden(&["things", "list", "--endpoint", endpoint, "--token", "wdn_wrong"], None).failure(1);
    assert!(run.stderr.starts_with("warden: UnrecognizedClientException: "), "{}", run.stderr);
}

#[test]
fn the_token_defaults_to_the_data_dirs() {
    let s = TestServer::start();
    let endpoint = s.endpoint.as_str();
    let data_dir = s.data_dir.to_str().unwrap();
    s.run(&["things", "create", "dev-1"]).success();
    let expect = "NAME   VERSION  ATTRIBUTES\ndev-1  1        -\n";

    let run = warden(&["things", "list", "--endpoint", endpoint, "--data-dir", data_dir], None).success();
    assert_eq!(run.stdout, expect);
    // `./warden-data` when nothing is said, as for `warden server`.
    let run =
        warden_with(&["things", "list", "--endpoint", endpoint], None, Some(s.dir.path()), &[]).success();
    assert_eq!(run.stdout, expect);
    // And every option from the environment.
    let env = [("WARDEN_ENDPOINT", endpoint), ("WARDEN_DATA_DIR", data_dir)];
    assert_eq!(warden_with(&["things", "list"], None, None, &env).success().stdout, expect);
    let env = [("WARDEN_ENDPOINT", endpoint), ("WARDEN_TOKEN", s.token.as_str())];
    assert_eq!(warden_with(&["things", "list"], None, None, &env).success().stdout, expect);

    let missing = s.path("elsewhere");
    let run =
        warden(&["things", "list", "--endpoint", endpoint, "--data-dir", missing.to_str().unwrap()], None)
            .failure(1);
    assert!(run.stderr.starts_with("warden: no API token: pass --token"), "{}", run.stderr);
    assert!(run.stderr.contains(&*missing.join("api-token").to_string_lossy()), "{}", run.stderr);
}

#[test]
fn an_unreachable_server_is_named_with_a_hint() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let run = warden(&["groups", "list", "--endpoint", &endpoint, "--token", "t"], None).failure(1);
    assert_eq!(
        run.stderr,
        format!(
            "warden: cannot connect to the Warden API at {endpoint} (connection refused). Is the server running? \
             Start it with `warden server`, or point --endpoint (WARDEN_ENDPOINT) at it\n"
        )
    );
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["things"][..],
        &["things", "frobnicate"],
        &["things", "create"],
        &["things", "list", "--output", "yaml"],
        &["things", "create", "dev-1", "--policy", "P"],
        &["things", "create", "dev-1", "--attr", "novalue"],
        &["things", "update", "dev-1"],
        &["certs", "create"],
        &["groups", "add-thing", "lab"],
    ] {
        let run = warden(args, None);
        assert_eq!(run.code, Some(2), "warden {}: {}", args.join(" "), run.stderr);
        assert_eq!(run.stdout, "");
        assert!(
            run.stderr.contains("Usage: warden") || run.stderr.contains("For more information"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn every_command_has_help_and_groups_have_examples() {
    let groups: &[(&str, &[&str])] = &[
        ("things", &["create", "list", "describe", "update", "delete"]),
        (
            "groups",
            &["create", "list", "describe", "delete", "add-thing", "remove-thing", "things", "for-thing"],
        ),
        (
            "certs",
            &[
                "list",
                "describe",
                "create",
                "register",
                "activate",
                "deactivate",
                "revoke",
                "delete",
                "attach",
                "detach",
            ],
        ),
        (
            "policies",
            &["create", "get", "list", "delete", "attach", "detach", "targets", "for-cert", "for-group"],
        ),
    ];
    for (group, commands) in groups {
        let help = warden(&[group, "--help"], None).success().stdout;
        assert!(help.contains("\nExamples:\n"), "warden {group} --help:\n{help}");
        for command in *commands {
            assert!(
                help.contains(&format!("\n  {command} ")),
                "warden {group} --help lacks {command}:\n{help}"
            );
            let help = warden(&[group, command, "--help"], None).success().stdout;
            assert!(help.contains("--endpoint <URL>") && help.contains("--output <OUTPUT>"), "{help}");
        }
    }
}
