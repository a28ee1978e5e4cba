//! Presence on one process (`wit/presence.wit`), through `guests/probe`'s
//! `presence` mode: members listed with their info and counted, join and
//! leave notices to the others, a member gone when it unsubscribes or its
//! connection drops.

mod support;

use support::redis::Redis;
use support::*;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The next frame that is not a notice: the probe's answer.
async fn answer(ws: &mut Client) -> String {
    loop {
        let text = next_text(ws).await;
        if !text.starts_with('{') {
            return text;
        }
    }
}

#[tokio::test]
async fn members_are_listed_counted_and_announced() {
    let server = Server::start(&[("/probe", "probe")]);
    let mut alice = server.connect("/probe?presence=room&info=alice").await;
    send_text(&mut alice, "count").await;
    assert_eq!(next_text(&mut alice).await, "1");

    let mut bob = server.connect("/probe?presence=room&info=bob").await;
    let join = json(&next_text(&mut alice).await);
    assert_eq!(join["join"]["info"], "bob", "{join}");
    let bob_id = join["join"]["conn"].as_u64().unwrap();
    send_text(&mut bob, "members").await;
    // Bob hears no notice of his own join: his first frame is the answer.
    let members = next_text(&mut bob).await;
    assert!(
        members.contains("=alice,") && members.ends_with(&format!(",{bob_id}=bob")),
        "{members}"
    );

    // Joining again changes the info and tells no one.
    send_text(&mut bob, "rejoin robert").await;
    assert_eq!(next_text(&mut bob).await, "false");
    send_text(&mut alice, "members").await;
    assert!(
        next_text(&mut alice)
            .await
            .ends_with(&format!(",{bob_id}=robert"))
    );

    // A member whose connection drops is gone, and the others hear of it.
    let carol = server.connect("/probe?presence=room&info=carol").await;
    let join = json(&next_text(&mut alice).await);
    assert_eq!(join["join"]["info"], "carol");
    let carol_id = &join["join"]["conn"];
    drop(carol);
    let leave = json(&next_text(&mut alice).await);
    assert_eq!(&leave["leave"]["conn"], carol_id, "{leave}");

    // One that unsubscribes leaves too.
    send_text(&mut bob, "leave").await;
    assert_eq!(answer(&mut bob).await, "true");
    let leave = json(&next_text(&mut alice).await);
    assert_eq!(leave["leave"]["conn"], bob_id);
    send_text(&mut alice, "count").await;
    assert_eq!(next_text(&mut alice).await, "1");
    send_text(&mut alice, "members").await;
    assert!(next_text(&mut alice).await.ends_with("=alice"));
}

/// A member's info is bounded: past 1,024 bytes the join is refused (the
/// probe's handler ends with the error: 1011).
#[tokio::test]
async fn a_members_info_is_bounded() {
    let server = Server::start(&[("/probe", "probe")]);
    let long = "x".repeat(1025);
    let mut ws = server
        .connect(&format!("/probe?presence=room&info={long}"))
        .await;
    assert_eq!(close_code(&mut ws).await, Some(1011));
    // The log is written by a thread of its own: wait for the line.
    server.wait_for_log("info is at most 1024 bytes").await;
}

/// `[[presence]]` in the config file turns a topic's notices on for
/// guests that do not ask (`guests/probe` with `quiet`).
#[tokio::test]
async fn the_config_file_turns_notices_on() {
    let dir = tempdir("presence-config");
    std::fs::copy(guest("probe"), dir.join("probe.wasm")).unwrap();
    let config = dir.join("wshost.toml");
    let text = "[[route]]\npath = \"/probe\"\ncomponent = \"probe.wasm\"\n\n\
                [[presence]]\ntopics = \"room:*\"\nnotices = true\n";
    std::fs::write(&config, text).unwrap();
    let checked = stdout_of_success(wshost().arg("check").arg("--config").arg(&config));
    assert!(
        checked.contains("presence: 1 [[presence]] entries"),
        "{checked}"
    );
    let server = Server::start_with(&["--config".into(), config.display().to_string()]);
    let mut alice = server
        .connect("/probe?presence=room:1&info=alice&quiet")
        .await;
    send_text(&mut alice, "count").await;
    assert_eq!(next_text(&mut alice).await, "1");
    let _bob = server
        .connect("/probe?presence=room:1&info=bob&quiet")
        .await;
    let join = json(&next_text(&mut alice).await);
    assert_eq!(join["join"]["info"], "bob", "{join}");
    // A topic no rule covers: no notices.
    let mut carol = server
        .connect("/probe?presence=lobby&info=carol&quiet")
        .await;
    send_text(&mut carol, "count").await;
    assert_eq!(next_text(&mut carol).await, "1");
    let _dave = server
        .connect("/probe?presence=lobby&info=dave&quiet")
        .await;
    loop {
        send_text(&mut carol, "count").await;
        let count = next_text(&mut carol).await;
        assert!(!count.starts_with('{'), "a notice: {count}");
        if count == "2" {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Presence across three processes on one Redis (`--cluster`): members are
/// listed and counted cluster-wide, join and leave notices cross
/// processes, and a killed process's members are gone within 13 s (a live
/// process sends their leave notices).
#[tokio::test(flavor = "multi_thread")]
async fn across_three_processes_members_are_the_clusters_and_a_killed_ones_go() {
    let redis = Redis::start();
    let node = || Server::start_flagged(&["--cluster", &redis.url()], &[("/probe", "probe")]);
    let (a, b, c) = (node(), node(), node());
    let mut alice = a.connect("/probe?presence=room&info=alice").await;
    send_text(&mut alice, "count").await;
    assert_eq!(next_text(&mut alice).await, "1");
    redis.wait_subscribed("room", 1).await;
    let mut bob = b.connect("/probe?presence=room&info=bob").await;
    let join = json(&next_text(&mut alice).await);
    assert_eq!(join["join"]["info"], "bob", "{join}");
    redis.wait_subscribed("room", 2).await;
    let carol = c.connect("/probe?presence=room&info=carol").await;
    let mut carol_id = serde_json::Value::Null;
    for ws in [&mut alice, &mut bob] {
        let join = json(&next_text(ws).await);
        assert_eq!(join["join"]["info"], "carol", "{join}");
        carol_id = join["join"]["conn"].clone();
    }

    // Listed by id across the three, and counted.
    send_text(&mut bob, "count").await;
    assert_eq!(answer(&mut bob).await, "3");
    send_text(&mut alice, "members").await;
    let members = answer(&mut alice).await;
    let listed: Vec<(u64, &str)> = members
        .split(',')
        .map(|m| m.split_once('=').unwrap())
        .map(|(id, info)| (id.parse().unwrap(), info))
        .collect();
    assert!(listed.is_sorted_by_key(|(id, _)| *id), "{members}");
    let mut names: Vec<_> = listed.iter().map(|(_, info)| *info).collect();
    names.sort();
    assert_eq!(names, ["alice", "bob", "carol"], "{members}");
    assert!(
        listed
            .iter()
            .any(|(id, info)| *info == "carol" && carol_id == *id)
    );

    // A process killed outright: its member is gone within 13 s, and the
    // others hear of it from a live process.
    let killed = std::time::Instant::now();
    drop(c);
    let leave = json(&next_within(&mut alice, std::time::Duration::from_secs(20)).await);
    assert_eq!(leave["leave"]["conn"], carol_id, "{leave}");
    let took = killed.elapsed();
    assert!(took < std::time::Duration::from_secs(14), "{took:?}");
    send_text(&mut bob, "count").await;
    assert_eq!(answer(&mut bob).await, "2");
    drop(carol);

    // A member that leaves on a live process is gone at once.
    send_text(&mut bob, "leave").await;
    assert_eq!(answer(&mut bob).await, "true");
    let leave = json(&next_text(&mut alice).await);
    assert!(leave["leave"]["conn"].is_u64(), "{leave}");
    send_text(&mut alice, "members").await;
    assert!(answer(&mut alice).await.ends_with("=alice"));
}

/// The next text frame within `wait` (longer than the usual wait).
async fn next_within(ws: &mut Client, wait: std::time::Duration) -> String {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await;
        match frame.expect("nothing within the wait") {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}
