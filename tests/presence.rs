//! Presence on one process (`wit/presence.wit`), through `guests/probe`'s
//! `presence` mode: members listed with their info and counted, join and
//! leave notices to the others, a member gone when it unsubscribes or its
//! connection drops.

mod support;

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
