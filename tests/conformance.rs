//! RFC 6455 conformance against the `mirror` guest and its event-world twin
//! `event_mirror`, case by case in the manner of the Autobahn TestSuite (its
//! section numbers are in the case names): framing, pings and pongs, reserved
//! bits, opcodes, fragmentation, UTF-8, close handling, large messages. Frames are written by hand, so a
//! case can send exactly what a broken or hostile client would.

mod support;

use support::raw::*;
use support::*;

/// What the server must do after a case's frames.
enum Expect {
    /// Answer with these frames (pongs) and messages, in order, then complete
    /// a clean close handshake (1000) when the test closes.
    Replies(Vec<(u8, Vec<u8>)>),
    /// Fail the connection with this close code, then drop TCP.
    Fail(u16),
    /// The case's frames end with a Close: answer it with one of these codes
    /// (0: a Close without a code), then drop TCP.
    Close(Vec<u16>),
}

struct Case {
    name: String,
    frames: Vec<RawFrame>,
    /// Write the frames' bytes in pieces of this size, to split frames across reads.
    chunk: Option<usize>,
    expect: Expect,
}

fn case(name: impl Into<String>, frames: Vec<RawFrame>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        frames,
        chunk: None,
        expect,
    }
}

fn text(payload: impl Into<Vec<u8>>) -> RawFrame {
    RawFrame::new(TEXT, payload)
}

fn binary(payload: impl Into<Vec<u8>>) -> RawFrame {
    RawFrame::new(BINARY, payload)
}

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn ascii(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn replies(list: &[(u8, &[u8])]) -> Expect {
    Expect::Replies(list.iter().map(|(op, p)| (*op, p.to_vec())).collect())
}

fn framing() -> Vec<Case> {
    let mut cases = Vec::new();
    for len in [0, 125, 126, 127, 128, 65535, 65536] {
        let payload = ascii(len);
        cases.push(case(
            format!("1.1 text of {len} bytes"),
            vec![text(payload.clone())],
            replies(&[(TEXT, &payload)]),
        ));
        let payload = bytes(len);
        cases.push(case(
            format!("1.2 binary of {len} bytes"),
            vec![binary(payload.clone())],
            replies(&[(BINARY, &payload)]),
        ));
    }
    let payload = ascii(65536);
    cases.push(Case {
        chunk: Some(997),
        ..case(
            "1.1.8 text of 65536 bytes written in 997-byte pieces",
            vec![text(payload.clone())],
            replies(&[(TEXT, &payload)]),
        )
    });
    cases
}

fn pings() -> Vec<Case> {
    let hello = b"Hello, world!".to_vec();
    let mut cases = vec![
        case(
            "2.1 ping without payload",
            vec![RawFrame::new(PING, vec![])],
            replies(&[(PONG, b"")]),
        ),
        case(
            "2.2 ping with text payload",
            vec![RawFrame::new(PING, hello.clone())],
            replies(&[(PONG, &hello)]),
        ),
        case(
            "2.3 ping with binary payload",
            vec![RawFrame::new(
                PING,
                vec![0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff],
            )],
            replies(&[(PONG, &[0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff])]),
        ),
        case(
            "2.4 ping with 125-byte payload",
            vec![RawFrame::new(PING, bytes(125))],
            replies(&[(PONG, &bytes(125))]),
        ),
        case(
            "2.5 ping with 126-byte payload",
            vec![RawFrame::new(PING, bytes(126))],
            Expect::Fail(1002),
        ),
        Case {
            chunk: Some(1),
            ..case(
                "2.6 ping with 125-byte payload written byte by byte",
                vec![RawFrame::new(PING, bytes(125))],
                replies(&[(PONG, &bytes(125))]),
            )
        },
        case(
            "2.7 unsolicited pong without payload",
            vec![RawFrame::new(PONG, vec![])],
            replies(&[]),
        ),
        case(
            "2.8 unsolicited pong with payload",
            vec![RawFrame::new(PONG, b"unsolicited".to_vec())],
            replies(&[]),
        ),
        case(
            "2.9 unsolicited pong, then ping",
            vec![
                RawFrame::new(PONG, b"unsolicited".to_vec()),
                RawFrame::new(PING, b"solicited".to_vec()),
            ],
            replies(&[(PONG, b"solicited")]),
        ),
    ];
    let ten: Vec<RawFrame> = (0..10)
        .map(|i| RawFrame::new(PING, format!("ping {i}").into_bytes()))
        .collect();
    let pongs: Vec<(u8, Vec<u8>)> = (0..10)
        .map(|i| (PONG, format!("ping {i}").into_bytes()))
        .collect();
    cases.push(case("2.10 ten pings", ten, Expect::Replies(pongs)));
    cases
}

fn reserved_bits() -> Vec<Case> {
    let mut cases = Vec::new();
    for rsv in 1..=7u8 {
        cases.push(case(
            format!("3 text with RSV bits {rsv:03b}"),
            vec![text(b"Hello".to_vec()).rsv(rsv)],
            Expect::Fail(1002),
        ));
    }
    cases.push(case(
        "3.2 echoed text, then text with RSV2",
        vec![text(b"first".to_vec()), text(b"second".to_vec()).rsv(2)],
        Expect::Fail(1002),
    ));
    cases.push(case(
        "3.5 binary with RSV1|RSV3",
        vec![binary(bytes(8)).rsv(5)],
        Expect::Fail(1002),
    ));
    cases.push(case(
        "3.6 ping with RSV1|RSV2",
        vec![RawFrame::new(PING, b"Hello".to_vec()).rsv(6)],
        Expect::Fail(1002),
    ));
    cases.push(case(
        "3.7 close with all RSV bits",
        vec![RawFrame::close(1000, b"").rsv(7)],
        Expect::Fail(1002),
    ));
    cases
}

fn opcodes() -> Vec<Case> {
    let mut cases = Vec::new();
    for opcode in (3..=7).chain(0xB..=0xF) {
        for payload in [vec![], b"reserved".to_vec()] {
            cases.push(case(
                format!("4 reserved opcode {opcode:#x}, {} bytes", payload.len()),
                vec![RawFrame::new(opcode, payload)],
                Expect::Fail(1002),
            ));
        }
    }
    cases.push(case(
        "4.1.3 text, reserved opcode 0x5, ping",
        vec![
            text(b"before".to_vec()),
            RawFrame::new(5, vec![]),
            RawFrame::new(PING, vec![]),
        ],
        Expect::Fail(1002),
    ));
    cases
}

fn fragmentation() -> Vec<Case> {
    let cont = |p: &[u8]| RawFrame::new(CONTINUATION, p.to_vec());
    vec![
        case(
            "5.1 fragmented ping",
            vec![
                RawFrame::new(PING, b"frag".to_vec()).fin(false),
                cont(b"ment"),
            ],
            Expect::Fail(1002),
        ),
        case(
            "5.2 fragmented pong",
            vec![
                RawFrame::new(PONG, b"frag".to_vec()).fin(false),
                cont(b"ment"),
            ],
            Expect::Fail(1002),
        ),
        case(
            "5.3 text in two fragments",
            vec![text(b"frag".to_vec()).fin(false), cont(b"ment")],
            replies(&[(TEXT, b"fragment")]),
        ),
        case(
            "5.5 text in many one-byte fragments",
            {
                let mut frames = vec![text(b"f".to_vec()).fin(false)];
                frames.extend(b"ragmente".iter().map(|b| cont(&[*b]).fin(false)));
                frames.push(cont(b"d"));
                frames
            },
            replies(&[(TEXT, b"fragmented")]),
        ),
        case(
            "5.6 text in two fragments with a ping between",
            vec![
                text(b"frag".to_vec()).fin(false),
                RawFrame::new(PING, b"between".to_vec()),
                cont(b"ment"),
            ],
            replies(&[(PONG, b"between"), (TEXT, b"fragment")]),
        ),
        case(
            "5.9 continuation with no message under way",
            vec![cont(b"orphan"), text(b"after".to_vec())],
            Expect::Fail(1002),
        ),
        case(
            "5.10 unfinished continuation with no message under way",
            vec![cont(b"orphan").fin(false), cont(b"x")],
            Expect::Fail(1002),
        ),
        case(
            "5.15 a new text message before the fragmented one ends",
            vec![text(b"one".to_vec()).fin(false), text(b"two".to_vec())],
            Expect::Fail(1002),
        ),
        case(
            "5.18 two text starts in a row",
            vec![
                text(b"one".to_vec()).fin(false),
                text(b"two".to_vec()).fin(false),
            ],
            Expect::Fail(1002),
        ),
        case(
            "5.19 fragments with pings between, in order",
            vec![
                text(b"a".to_vec()).fin(false),
                cont(b"b").fin(false),
                RawFrame::new(PING, b"p1".to_vec()),
                cont(b"c").fin(false),
                RawFrame::new(PING, b"p2".to_vec()),
                cont(b"d"),
            ],
            replies(&[(PONG, b"p1"), (PONG, b"p2"), (TEXT, b"abcd")]),
        ),
        case(
            "5.20 empty fragments",
            vec![text(vec![]).fin(false), cont(b"").fin(false), cont(b"x")],
            replies(&[(TEXT, b"x")]),
        ),
    ]
}

const VALID_UTF8: &str = "Hello-µ@ßöäüàá-UTF-8!!";

const INVALID_UTF8: &[(&str, &[u8])] = &[
    ("a lone continuation byte", &[0x80]),
    ("an overlong NUL", &[0xc0, 0x80]),
    ("an overlong slash", &[0xe0, 0x80, 0xaf]),
    ("a UTF-16 surrogate", &[0xed, 0xa0, 0x80]),
    ("a code point past U+10FFFF", &[0xf4, 0x90, 0x80, 0x80]),
    ("the byte 0xFE", &[0xfe]),
    ("the byte 0xFF", &[0xff]),
    ("a sequence cut short", &[0x48, 0x69, 0xe2, 0x82]),
    (
        "κόσμε then a surrogate",
        &[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            0x65, 0x64, 0x69, 0x74, 0x65, 0x64,
        ],
    ),
];

fn utf8() -> Vec<Case> {
    let cont = |p: &[u8]| RawFrame::new(CONTINUATION, p.to_vec());
    let valid = VALID_UTF8.as_bytes();
    let mut cases = vec![
        case(
            "6.1 empty text in empty fragments",
            vec![text(vec![]).fin(false), cont(b"").fin(false), cont(b"")],
            replies(&[(TEXT, b"")]),
        ),
        case(
            "6.2.1 valid UTF-8 in one frame",
            vec![text(valid.to_vec())],
            replies(&[(TEXT, valid)]),
        ),
    ];
    // 6.2.3: valid UTF-8 split at every byte, code points cut in two.
    for at in 1..valid.len() {
        cases.push(case(
            format!("6.2.3 valid UTF-8 split at byte {at}"),
            vec![text(valid[..at].to_vec()).fin(false), cont(&valid[at..])],
            replies(&[(TEXT, valid)]),
        ));
    }
    for (what, invalid) in INVALID_UTF8 {
        cases.push(case(
            format!("6.3 text holding {what}"),
            vec![text(invalid.to_vec())],
            Expect::Fail(1007),
        ));
        let mut split = b"ok ".to_vec();
        split.extend_from_slice(invalid);
        cases.push(case(
            format!("6.4 fragmented text holding {what}"),
            vec![text(split[..2].to_vec()).fin(false), cont(&split[2..])],
            Expect::Fail(1007),
        ));
    }
    // 6.4.1: fail fast, on the first fragment that cannot become valid,
    // without waiting for the message to end.
    cases.push(case(
        "6.4.1 invalid first fragment of an unfinished message",
        vec![text(vec![0xce, 0xba, 0xed, 0xa0, 0x80]).fin(false)],
        Expect::Fail(1007),
    ));
    cases
}

fn closing() -> Vec<Case> {
    let mut cases = vec![
        case(
            "7.1.1 close 1000",
            vec![RawFrame::close(1000, b"")],
            Expect::Close(vec![1000]),
        ),
        case(
            "7.1.2 close twice",
            vec![RawFrame::close(1000, b""), RawFrame::close(1000, b"")],
            Expect::Close(vec![1000]),
        ),
        case(
            "7.1.3 ping after close is not answered",
            vec![
                RawFrame::close(1000, b""),
                RawFrame::new(PING, b"late".to_vec()),
            ],
            Expect::Close(vec![1000]),
        ),
        case(
            "7.1.4 text after close is ignored",
            vec![RawFrame::close(1000, b""), text(b"late".to_vec())],
            Expect::Close(vec![1000]),
        ),
        case(
            "7.1.5 close in the middle of a fragmented message",
            vec![
                text(b"frag".to_vec()).fin(false),
                RawFrame::close(1000, b""),
            ],
            Expect::Close(vec![1000]),
        ),
        case(
            "7.3.1 close without payload",
            vec![RawFrame::new(CLOSE, vec![])],
            Expect::Close(vec![0, 1000]),
        ),
        case(
            "7.3.2 close with a one-byte payload",
            vec![RawFrame::new(CLOSE, vec![0x03])],
            Expect::Fail(1002),
        ),
        case(
            "7.3.4 close 1000 with a reason",
            vec![RawFrame::close(1000, b"Hello World!")],
            Expect::Close(vec![1000]),
        ),
        case(
            "7.3.5 close 1000 with a 123-byte reason",
            vec![RawFrame::close(1000, &ascii(123))],
            Expect::Close(vec![1000]),
        ),
        case(
            "7.3.6 close 1000 with a 124-byte reason (126-byte control frame)",
            vec![RawFrame::close(1000, &ascii(124))],
            Expect::Fail(1002),
        ),
        case(
            "7.5.1 close with a reason that is not UTF-8",
            vec![RawFrame::close(1000, &[0xce, 0xba, 0xed, 0xa0, 0x80])],
            Expect::Fail(1007),
        ),
    ];
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        cases.push(case(
            format!("7.7 close with valid code {code}"),
            vec![RawFrame::close(code, b"")],
            Expect::Close(vec![1000, code]),
        ));
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        cases.push(case(
            format!("7.9 close with invalid code {code}"),
            vec![RawFrame::close(code, b"")],
            Expect::Fail(1002),
        ));
    }
    cases
}

fn large_messages() -> Vec<Case> {
    let mut cases = Vec::new();
    for len in [256 << 10, 1 << 20, 4 << 20] {
        let payload = ascii(len);
        cases.push(case(
            format!("9.1 text of {len} bytes"),
            vec![text(payload.clone())],
            replies(&[(TEXT, &payload)]),
        ));
        let payload = bytes(len);
        cases.push(case(
            format!("9.2 binary of {len} bytes"),
            vec![binary(payload.clone())],
            replies(&[(BINARY, &payload)]),
        ));
    }
    // 9.3/9.4: a 4 MiB message in fragments of 64 KiB.
    let payload = bytes(4 << 20);
    let mut frames: Vec<RawFrame> = payload
        .chunks(64 << 10)
        .map(|c| RawFrame::new(CONTINUATION, c.to_vec()).fin(false))
        .collect();
    frames[0].opcode = BINARY;
    frames.last_mut().unwrap().fin = true;
    cases.push(case(
        "9.4 binary of 4 MiB in 64 KiB fragments",
        frames,
        replies(&[(BINARY, &payload)]),
    ));
    cases
}

/// Run one case on a fresh connection; `Err` says what went wrong.
async fn run(server: &Server, case: &Case) -> Result<(), String> {
    let mut ws = RawWs::connect(server, "/mirror").await;
    for frame in &case.frames {
        match case.chunk {
            Some(size) => {
                let bytes = frame.encode(Some([1, 2, 3, 4]));
                for piece in bytes.chunks(size) {
                    ws.send_bytes(piece).await;
                }
            }
            None => ws.send(frame).await,
        }
    }
    let code = match &case.expect {
        Expect::Replies(expected) => {
            for (opcode, payload) in expected {
                let got = recv_message(&mut ws).await;
                if got.as_ref() != Some(&(*opcode, payload.clone())) {
                    return Err(format!(
                        "expected opcode {opcode:#x} with {} bytes, got {}",
                        payload.len(),
                        describe(&got)
                    ));
                }
            }
            ws.send(&RawFrame::close(1000, b"")).await;
            match ws.close_code().await {
                Some(1000) => Ok(()),
                other => Err(format!(
                    "closing after the replies: got {other:?}, not 1000"
                )),
            }
        }
        Expect::Fail(code) => match ws.close_code().await {
            Some(got) if got == *code => Ok(()),
            other => Err(format!("expected Close {code}, got {other:?}")),
        },
        Expect::Close(codes) => match ws.close_code().await {
            Some(got) if codes.contains(&got) => Ok(()),
            other => Err(format!("expected Close {codes:?}, got {other:?}")),
        },
    };
    code?;
    // After its Close, the server drops TCP and sends nothing more.
    match ws.recv().await {
        None => Ok(()),
        Some(frame) => Err(format!("a frame after the Close: {frame:?}")),
    }
}

/// The next message or control frame, continuation frames joined.
async fn recv_message(ws: &mut RawWs) -> Option<(u8, Vec<u8>)> {
    let first = ws.recv().await?;
    let (opcode, mut payload, mut fin) = (first.opcode, first.payload, first.fin);
    while !fin {
        let next = ws.recv().await?;
        if next.opcode != CONTINUATION {
            return Some((next.opcode, next.payload));
        }
        payload.extend(next.payload);
        fin = next.fin;
    }
    Some((opcode, payload))
}

fn describe(got: &Option<(u8, Vec<u8>)>) -> String {
    match got {
        None => "the end of the connection".into(),
        Some((CLOSE, p)) if p.len() >= 2 => {
            format!("Close {}", u16::from_be_bytes([p[0], p[1]]))
        }
        Some((opcode, p)) => format!("opcode {opcode:#x} with {} bytes", p.len()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_guest_conforms_to_rfc_6455() {
    conforms("mirror").await;
}

/// The same cases through the event world: one instance, a socket task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_mirror_guest_conforms_to_rfc_6455() {
    conforms("event_mirror").await;
}

async fn conforms(guest: &str) {
    let server = Server::start(&[("/mirror", guest)]);
    let cases: Vec<Case> = [
        framing(),
        pings(),
        reserved_bits(),
        opcodes(),
        fragmentation(),
        utf8(),
        closing(),
        large_messages(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(why) = run(&server, case).await {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    eprintln!(
        "conformance of {guest}: {} of {} cases passed",
        cases.len() - failures.len(),
        cases.len()
    );
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn an_unmasked_client_frame_is_a_protocol_error() {
    for guest in ["mirror", "event_mirror"] {
        let server = Server::start(&[("/mirror", guest)]);
        let mut ws = RawWs::connect(&server, "/mirror").await;
        ws.send_bytes(&text(b"naked".to_vec()).encode(None)).await;
        assert_eq!(ws.close_code().await, Some(1002), "{guest}");
    }
}
