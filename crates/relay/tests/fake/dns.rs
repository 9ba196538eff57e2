//! A tiny authoritative DNS server over UDP: answers from a table, NXDOMAIN for names it has
//! nothing for, NODATA for names it knows with other types; some names can be made to
//! SERVFAIL or to get no answer at all. Every question is recorded.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<RData>>,
    servfail: HashSet<String>,
    silent: HashSet<String>,
}

pub struct FakeDns {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn name(s: &str) -> Name {
    Name::from_ascii(format!("{}.", s.trim_end_matches('.'))).expect("test name")
}

impl FakeDns {
    pub async fn start() -> FakeDns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind DNS");
        let addr = socket.local_addr().expect("DNS address");
        let zone = Arc::new(Mutex::new(Zone::default()));
        let queries = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(serve(socket, zone.clone(), queries.clone()));
        FakeDns {
            addr,
            zone,
            queries,
        }
    }

    fn add(&self, owner: &str, rtype: RecordType, data: RData) {
        let mut zone = self.zone.lock().expect("zone");
        zone.records
            .entry((key(owner), rtype))
            .or_default()
            .push(data);
    }

    /// `owner MX pref exchange`; an exchange of "." is a null MX.
    pub fn mx(&self, owner: &str, pref: u16, exchange: &str) {
        let exchange = if exchange == "." {
            Name::root()
        } else {
            name(exchange)
        };
        self.add(owner, RecordType::MX, RData::MX(MX::new(pref, exchange)));
    }

    pub fn addr(&self, owner: &str, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => self.add(owner, RecordType::A, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(owner, RecordType::AAAA, RData::AAAA(AAAA(v6))),
        }
    }

    pub fn servfail(&self, owner: &str) {
        self.zone.lock().expect("zone").servfail.insert(key(owner));
    }

    pub fn silent(&self, owner: &str) {
        self.zone.lock().expect("zone").silent.insert(key(owner));
    }

    /// The questions asked so far about `owner`.
    pub fn asked(&self, owner: &str) -> Vec<RecordType> {
        let owner = key(owner);
        self.queries
            .lock()
            .expect("queries")
            .iter()
            .filter(|(n, _)| *n == owner)
            .map(|(_, t)| *t)
            .collect()
    }
}

async fn serve(
    socket: UdpSocket,
    zone: Arc<Mutex<Zone>>,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(request) = Message::from_vec(buf.get(..n).unwrap_or_default()) else {
            continue;
        };
        let Some(query) = request.queries.first().cloned() else {
            continue;
        };
        let owner = key(&query.name().to_ascii());
        let rtype = query.query_type();
        queries
            .lock()
            .expect("queries")
            .push((owner.clone(), rtype));
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.metadata.authoritative = true;
        response.add_query(query.clone());
        {
            let zone = zone.lock().expect("zone");
            if zone.silent.contains(&owner) {
                continue;
            }
            if zone.servfail.contains(&owner) {
                response.metadata.response_code = ResponseCode::ServFail;
            } else if let Some(data) = zone.records.get(&(owner.clone(), rtype)) {
                for d in data {
                    response.add_answer(Record::from_rdata(query.name().clone(), 60, d.clone()));
                }
            } else if !zone.records.keys().any(|(n, _)| *n == owner) {
                response.metadata.response_code = ResponseCode::NXDomain;
            }
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}
