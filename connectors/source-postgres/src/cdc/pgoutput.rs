//! A decoder for the messages of PostgreSQL's `pgoutput` logical decoding plugin, protocol
//! version 1 (the layout is in PostgreSQL's "Logical Replication Message Formats"). Messages
//! borrow from the bytes they were decoded from, so tuple values go to the Arrow builders
//! without a copy. Anything malformed is an `Err` describing what was wrong, never a panic:
//! the caller adds the stream's name.

use crate::decode::PG_EPOCH_US;

/// One pgoutput message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message<'a> {
    Begin {
        /// The LSN of the transaction's commit record (where the commit record starts).
        final_lsn: u64,
        /// Commit time, µs since the Unix epoch.
        commit_micros: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        /// The end of the commit record: the transaction's position in checkpoints.
        end_lsn: u64,
        commit_micros: i64,
    },
    Origin,
    Relation(Relation),
    Type,
    Insert {
        relation: u32,
        new: Tuple<'a>,
    },
    Update {
        relation: u32,
        /// `Some` with 'K' (the old key; sent when the key changed) or 'O' (the whole old row,
        /// replica identity full).
        old: Option<(OldKind, Tuple<'a>)>,
        new: Tuple<'a>,
    },
    Delete {
        relation: u32,
        old_kind: OldKind,
        old: Tuple<'a>,
    },
    Truncate {
        relations: Vec<u32>,
    },
    /// A logical decoding message (`pg_logical_emit_message`): ignored.
    Logical,
}

/// Which old image an update or delete carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// Only the replica identity key columns are set ('K').
    Key,
    /// The whole old row ('O', replica identity full).
    Full,
}

/// A relation's description, sent before the first change to it in a decoding session and
/// again after its definition changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: u8,
    pub columns: Vec<RelColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelColumn {
    /// Part of the replica identity key.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

/// One column value of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datum<'a> {
    Null,
    /// An unchanged TOASTed value the server did not resend.
    Unchanged,
    /// The value's text form.
    Text(&'a [u8]),
    /// The value's binary send form (as in binary COPY).
    Binary(&'a [u8]),
}

pub type Tuple<'a> = Vec<Datum<'a>>;

/// A cursor over a message's bytes.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "a truncated message: {what} needs {n} bytes at offset {} of {}",
                    self.at,
                    self.data.len()
                )
            })?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn i32(&mut self, what: &str) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    /// A pgoutput timestamp (µs since 2000-01-01) as µs since the Unix epoch.
    fn timestamp(&mut self, what: &str) -> Result<i64, String> {
        let pg = self.u64(what)? as i64;
        pg.checked_add(PG_EPOCH_US)
            .ok_or_else(|| format!("{what} is out of range"))
    }
    fn cstring(&mut self, what: &str) -> Result<String, String> {
        let rest = &self.data[self.at..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| format!("{what} is not NUL-terminated"))?;
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|_| format!("{what} is not valid UTF-8"))?
            .to_string();
        self.at += nul + 1;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Tuple<'a>, String> {
        let n = self.u16("the tuple's column count")? as usize;
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            let datum = match self.u8("a column kind")? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.i32("a value length")?;
                    if len < 0 {
                        return Err(format!("column {i} has a negative length {len}"));
                    }
                    let v = self.take(len as usize, "a column value")?;
                    if kind == b't' {
                        Datum::Text(v)
                    } else {
                        Datum::Binary(v)
                    }
                }
                other => {
                    return Err(format!(
                        "column {i} has an unknown kind {:?}",
                        other as char
                    ))
                }
            };
            values.push(datum);
        }
        Ok(values)
    }
    fn expect_tuple(&mut self, tag: u8, what: &str) -> Result<Tuple<'a>, String> {
        let got = self.u8(what)?;
        if got != tag {
            return Err(format!(
                "{what}: expected tuple tag {:?}, got {:?}",
                tag as char, got as char
            ));
        }
        self.tuple()
    }
    fn end(&self, what: &str) -> Result<(), String> {
        if self.at == self.data.len() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected trailing bytes after a {what} message",
                self.data.len() - self.at
            ))
        }
    }
}

/// Decodes one pgoutput message.
pub fn decode(data: &[u8]) -> Result<Message<'_>, String> {
    let mut r = Reader { data, at: 0 };
    let tag = r.u8("the message type")?;
    let msg = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("Begin's final LSN")?,
            commit_micros: r.timestamp("Begin's commit time")?,
            xid: r.u32("Begin's xid")?,
        },
        b'C' => Message::Commit {
            flags: r.u8("Commit's flags")?,
            commit_lsn: r.u64("Commit's LSN")?,
            end_lsn: r.u64("Commit's end LSN")?,
            commit_micros: r.timestamp("Commit's time")?,
        },
        b'O' => {
            r.u64("Origin's LSN")?;
            r.cstring("Origin's name")?;
            Message::Origin
        }
        b'R' => {
            let id = r.u32("Relation's id")?;
            let namespace = r.cstring("Relation's namespace")?;
            let name = r.cstring("Relation's name")?;
            let replica_identity = r.u8("Relation's replica identity")?;
            let n = r.u16("Relation's column count")? as usize;
            let mut columns = Vec::with_capacity(n.min(1600));
            for _ in 0..n {
                let flags = r.u8("a column's flags")?;
                columns.push(RelColumn {
                    key: flags & 1 == 1,
                    name: r.cstring("a column's name")?,
                    type_oid: r.u32("a column's type")?,
                    typmod: r.i32("a column's typmod")?,
                });
            }
            Message::Relation(Relation {
                id,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => {
            r.u32("Type's id")?;
            r.cstring("Type's namespace")?;
            r.cstring("Type's name")?;
            Message::Type
        }
        b'I' => Message::Insert {
            relation: r.u32("Insert's relation")?,
            new: r.expect_tuple(b'N', "Insert")?,
        },
        b'U' => {
            let relation = r.u32("Update's relation")?;
            let old = match r.u8("Update's tuple tag")? {
                b'N' => None,
                b'K' => Some((OldKind::Key, r.tuple()?)),
                b'O' => Some((OldKind::Full, r.tuple()?)),
                other => return Err(format!("Update: unknown tuple tag {:?}", other as char)),
            };
            let new = match old {
                None => r.tuple()?,
                Some(_) => r.expect_tuple(b'N', "Update's new row")?,
            };
            Message::Update { relation, old, new }
        }
        b'D' => {
            let relation = r.u32("Delete's relation")?;
            let old_kind = match r.u8("Delete's tuple tag")? {
                b'K' => OldKind::Key,
                b'O' => OldKind::Full,
                other => return Err(format!("Delete: unknown tuple tag {:?}", other as char)),
            };
            Message::Delete {
                relation,
                old_kind,
                old: r.tuple()?,
            }
        }
        b'T' => {
            let n = r.u32("Truncate's relation count")? as usize;
            r.u8("Truncate's options")?;
            let mut relations = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                relations.push(r.u32("a truncated relation")?);
            }
            Message::Truncate { relations }
        }
        b'M' => return Ok(Message::Logical),
        other => {
            return Err(format!(
                "an unknown pgoutput message type {:?} (0x{other:02x})",
                other as char
            ))
        }
    };
    r.end(&(tag as char).to_string())?;
    Ok(msg)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds pgoutput messages byte by byte, as the server would.
    #[derive(Default)]
    pub struct Bytes(pub Vec<u8>);

    impl Bytes {
        pub fn new(tag: u8) -> Self {
            Self(vec![tag])
        }
        pub fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        pub fn u16(mut self, v: u16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn i32(mut self, v: i32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn u64(mut self, v: u64) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn cstr(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        /// A tuple of `(kind, value)` columns.
        pub fn tuple(mut self, cols: &[(u8, &[u8])]) -> Self {
            self = self.u16(cols.len() as u16);
            for (kind, v) in cols {
                self.0.push(*kind);
                if matches!(kind, b't' | b'b') {
                    self = self.i32(v.len() as i32);
                    self.0.extend_from_slice(v);
                }
            }
            self
        }
    }

    #[test]
    fn begin_and_commit() {
        let b = Bytes::new(b'B').u64(0x1_0000_0010).u64(1_000_000).u32(77);
        assert_eq!(
            decode(&b.0).unwrap(),
            Message::Begin {
                final_lsn: 0x1_0000_0010,
                commit_micros: PG_EPOCH_US + 1_000_000,
                xid: 77
            }
        );
        let c = Bytes::new(b'C').u8(0).u64(0x10).u64(0x38).u64(5);
        assert_eq!(
            decode(&c.0).unwrap(),
            Message::Commit {
                flags: 0,
                commit_lsn: 0x10,
                end_lsn: 0x38,
                commit_micros: PG_EPOCH_US + 5
            }
        );
    }

    #[test]
    fn relation_and_changes() {
        let r = Bytes::new(b'R')
            .u32(16384)
            .cstr("public")
            .cstr("t")
            .u8(b'd')
            .u16(2)
            .u8(1)
            .cstr("id")
            .u32(20)
            .i32(-1)
            .u8(0)
            .cstr("note")
            .u32(25)
            .i32(-1);
        let Message::Relation(rel) = decode(&r.0).unwrap() else {
            panic!()
        };
        assert_eq!(
            (rel.id, rel.namespace.as_str(), rel.name.as_str()),
            (16384, "public", "t")
        );
        assert!(rel.columns[0].key && !rel.columns[1].key);
        assert_eq!(rel.columns[1].type_oid, 25);

        let id = 5i64.to_be_bytes();
        let i = Bytes::new(b'I')
            .u32(16384)
            .u8(b'N')
            .tuple(&[(b'b', &id), (b't', b"hi")]);
        assert_eq!(
            decode(&i.0).unwrap(),
            Message::Insert {
                relation: 16384,
                new: vec![Datum::Binary(&id), Datum::Text(b"hi")]
            }
        );
        let u = Bytes::new(b'U')
            .u32(16384)
            .u8(b'K')
            .tuple(&[(b'b', &id), (b'n', b"")])
            .u8(b'N')
            .tuple(&[(b'b', &id), (b'u', b"")]);
        assert_eq!(
            decode(&u.0).unwrap(),
            Message::Update {
                relation: 16384,
                old: Some((OldKind::Key, vec![Datum::Binary(&id), Datum::Null])),
                new: vec![Datum::Binary(&id), Datum::Unchanged]
            }
        );
        let plain = Bytes::new(b'U').u32(1).u8(b'N').tuple(&[(b'n', b"")]);
        assert!(matches!(
            decode(&plain.0).unwrap(),
            Message::Update { old: None, .. }
        ));
        let d = Bytes::new(b'D').u32(1).u8(b'O').tuple(&[(b'b', &id)]);
        assert!(matches!(
            decode(&d.0).unwrap(),
            Message::Delete {
                old_kind: OldKind::Full,
                ..
            }
        ));
        let t = Bytes::new(b'T').u32(2).u8(0).u32(1).u32(2);
        assert_eq!(
            decode(&t.0).unwrap(),
            Message::Truncate {
                relations: vec![1, 2]
            }
        );
        let o = Bytes::new(b'O').u64(1).cstr("origin");
        assert_eq!(decode(&o.0).unwrap(), Message::Origin);
        let y = Bytes::new(b'Y').u32(1).cstr("public").cstr("mood");
        assert_eq!(decode(&y.0).unwrap(), Message::Type);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let id = 5i64.to_be_bytes();
        let good = Bytes::new(b'I')
            .u32(1)
            .u8(b'N')
            .tuple(&[(b'b', &id), (b't', b"hi")])
            .0;
        // Every truncation of a valid message is an error.
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "{n}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long).unwrap_err().contains("trailing"));
        assert!(decode(b"Zxx")
            .unwrap_err()
            .contains("unknown pgoutput message"));
        let bad_kind = Bytes::new(b'I').u32(1).u8(b'N').u16(1).u8(b'q').0;
        assert!(decode(&bad_kind).unwrap_err().contains("unknown kind"));
        let neg = Bytes::new(b'I').u32(1).u8(b'N').u16(1).u8(b'b').i32(-5).0;
        assert!(decode(&neg).unwrap_err().contains("negative"));
        let huge = Bytes::new(b'I')
            .u32(1)
            .u8(b'N')
            .u16(1)
            .u8(b'b')
            .i32(i32::MAX)
            .0;
        assert!(decode(&huge).unwrap_err().contains("truncated"));
        let no_nul = Bytes::new(b'R')
            .u32(1)
            .0
            .into_iter()
            .chain(*b"abc")
            .collect::<Vec<_>>();
        assert!(decode(&no_nul).unwrap_err().contains("NUL"));
        let wrong_tag = Bytes::new(b'I').u32(1).u8(b'K').tuple(&[]).0;
        assert!(decode(&wrong_tag)
            .unwrap_err()
            .contains("expected tuple tag"));
        assert!(decode(&[]).is_err());
    }
}
