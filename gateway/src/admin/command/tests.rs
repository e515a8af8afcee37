//! Tests of the admin command: table layout and escaping, counts printed as
//! notes rather than rows, revocation tables, and the `--limit` range.

use super::*;
use crate::admin::api::PoolSeats;

#[test]
fn tables_align_their_columns() {
    let licenses = Licenses {
        pools: vec![
            PoolSeats {
                pool: "interactive".into(),
                limit: 50,
                reserved: 1,
                in_use: 7,
                free: 43,
                waiting: 0,
            },
            PoolSeats {
                pool: "batch".into(),
                limit: 5,
                reserved: 0,
                in_use: 5,
                free: 0,
                waiting: 3,
            },
        ],
    };
    assert_eq!(
        licenses.table(),
        "POOL         LIMIT  RESERVED  IN USE  FREE  WAITING\n\
         interactive     50         1       7    43        0\n\
         batch            5         0       5     0        3\n"
    );
}

#[test]
fn session_counts_are_notes_not_table_rows() {
    let view = |id: &str| SessionView {
        session_id: id.into(),
        pool: "p".into(),
        subject: "alice".into(),
        issuer: "https://idp".into(),
        client: None,
        created: "c".into(),
        last_seen: "l".into(),
        idle_expires: "i".into(),
        absolute_expires: "a".into(),
        expires: "e".into(),
    };
    let list = SessionList {
        sessions: vec![view("s1"), view("s2")],
        next_cursor: Some("more".into()),
    };
    assert_eq!(list.table().lines().count(), 3);
    assert!(!list.table().contains("session(s)"));
    assert_eq!(
        list.notes(),
        ["2 session(s); more not shown (raise --limit)"]
    );
    let empty = SessionList {
        sessions: vec![],
        next_cursor: None,
    };
    assert_eq!(empty.table(), "");
    assert_eq!(empty.notes(), ["no open sessions"]);
}

#[test]
fn limits_are_whole_numbers_in_range() {
    assert_eq!(limit("1"), Ok(1));
    assert_eq!(limit("1000000"), Ok(1_000_000));
    for bad in ["0", "-1", "1000001", "ten", ""] {
        assert_eq!(
            limit(bad),
            Err("must be a whole number from 1 to 1000000".to_string()),
            "{bad:?}"
        );
    }
}

#[test]
fn revocation_tables_show_whom_they_concern() {
    use crate::session::Revocation;
    let views: Vec<RevocationView> = [
        Revocation::Token {
            key: "jti-1".into(),
            until_ms: 0,
        },
        Revocation::of_subject("https://idp", "bob", 0, 0),
        Revocation::Subject {
            subject: crate::session::identity::subject_key("https://idp", "carol"),
            named: None,
            not_before_ms: 0,
            until_ms: 0,
        },
    ]
    .iter()
    .map(RevocationView::from)
    .collect();
    let out = revocations_table(&views);
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[1][..5], ["jti-1", "token", "-", "-", "-"]);
    assert_eq!(rows[2][1..4], ["subject", "bob", "https://idp"]);
    assert!(rows[2][0].starts_with("subject:"));
    assert!(
        out.lines()
            .nth(3)
            .is_some_and(|l| l.contains("(not recorded)"))
    );
}

#[test]
fn cells_cannot_break_the_table() {
    let out = table(
        &[("A", Align::Left), ("B", Align::Left)],
        &[vec!["x\ny".into(), "\u{1b}[2J".into()]],
    );
    assert_eq!(out, "A    B\nx?y  ?[2J\n");
}
