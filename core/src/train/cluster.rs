//! Several machines training one model (issue #21): the link between nodes.
//!
//! Every node runs the same command. Within a node, peers sum their gradients with
//! burn-collective (threads, `parallel.rs`); between nodes, each node's first peer sends its
//! node's sum to node 0 over one TCP connection ([`NodeLink`]), node 0 adds the nodes' sums in
//! node order and sends the total back, and each node's first peer hands it to its other peers
//! (a burn-collective broadcast). Every peer of every node thus steps on the same bytes.
//!
//! Why not burn-collective's global level (its orchestrator and ring / tree over WebSocket):
//! in 0.21.0 a registration's second global all-reduce never returns (`SyncService::sync`
//! clears a copy of its list of synced nodes, not the list), which two processes here hit at
//! their first training step; and its orchestrator numbers a node by arrival, so a node that
//! re-registers for a later phase gets another node's id. The link below is a star through
//! node 0 (2·(N−1) buffers cross node 0's network card a step; `docs/parallel.md` models it).
//!
//! Nodes share nothing but the link: each reads its own copy of the data and writes its own
//! run folder, holding the same parameters after every step. So whenever a group starts or
//! reloads a checkpoint, its peers compare where they are ([`Agreement`]): a node at another
//! phase or step, with other data or other parameters, is an error naming the node, never a
//! silent mix of two trainings.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::shard::{Cluster, DeviceSet};
use crate::error::{Error, Result};

/// How long node 0 waits for the others to connect, and they for node 0 to listen: nodes are
/// started by hand, on machines that may still be loading data.
const CONNECT_WAIT: Duration = Duration::from_secs(600);
/// How long a node waits for another's gradients: longer than any step, short enough that a
/// machine that vanished without closing its connection ends the run the same day.
const STEP_WAIT: Duration = Duration::from_secs(1800);
const HELLO: &[u8; 8] = b"BVNODE01";

/// This node's connections: node 0 holds one per other node (index k − 1 for node k), every
/// other node one to node 0.
pub struct NodeLink {
    cluster: Cluster,
    streams: Vec<TcpStream>,
}

/// The port of `--coordinator HOST:PORT` (not 0), or one line saying how to write it.
pub fn coordinator_port(address: &str) -> Result<u16> {
    let port = address.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
    port.filter(|&p: &u16| p > 0).ok_or_else(|| {
        Error::usage(format!(
            "--coordinator {address}: write HOST:PORT (e.g. 10.0.0.1:29500)"
        ))
    })
}

fn link_error(cluster: &Cluster, node: u32, what: impl std::fmt::Display) -> Error {
    let me = cluster.node;
    Error::usage(format!(
        "node {me}: the link with node {node} failed: {what}"
    ))
}

/// One message: its length (u64) and its bytes.
fn send(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(&(bytes.len() as u64).to_le_bytes())?;
    stream.write_all(bytes)
}

fn receive(stream: &mut TcpStream, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut length = [0u8; 8];
    stream.read_exact(&mut length)?;
    let length = u64::from_le_bytes(length) as usize;
    if length > limit {
        return Err(std::io::Error::other(format!(
            "a message of {length} bytes (at most {limit} expected): not this program's link"
        )));
    }
    let mut bytes = vec![0u8; length];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Who a node says it is: the program, its number, the cluster's size, its peers.
fn hello(cluster: &Cluster, peers: usize) -> Vec<u8> {
    let fields = [cluster.node, cluster.nodes, peers as u32];
    HELLO
        .iter()
        .copied()
        .chain(fields.iter().flat_map(|f| f.to_le_bytes()))
        .collect()
}

fn read_hello(bytes: &[u8]) -> Option<[u32; 3]> {
    let fields = bytes.strip_prefix(HELLO.as_slice())?;
    (fields.len() == 12).then(|| {
        std::array::from_fn(|i| u32::from_le_bytes(fields[4 * i..4 * i + 4].try_into().unwrap()))
    })
}

impl NodeLink {
    /// Node 0: listens at the coordinator's port until every other node has said who it is.
    /// The others: connect to the coordinator (retrying while node 0 is not listening yet).
    pub fn connect(cluster: &Cluster, peers: usize) -> Result<NodeLink> {
        let streams = if cluster.node == 0 {
            Self::accept_nodes(cluster, peers)?
        } else {
            vec![Self::join(cluster, peers)?]
        };
        for stream in &streams {
            stream
                .set_read_timeout(Some(STEP_WAIT))
                .and_then(|()| stream.set_nodelay(true))
                .map_err(|e| Error::usage(format!("node {}: {e}", cluster.node)))?;
        }
        Ok(NodeLink {
            cluster: cluster.clone(),
            streams,
        })
    }

    fn accept_nodes(cluster: &Cluster, peers: usize) -> Result<Vec<TcpStream>> {
        let port = coordinator_port(&cluster.coordinator)?;
        let listener = TcpListener::bind(("0.0.0.0", port))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| {
                Error::usage(format!("--coordinator: cannot listen at port {port}: {e}"))
            })?;
        let mut streams: Vec<Option<TcpStream>> = (1..cluster.nodes).map(|_| None).collect();
        let deadline = Instant::now() + CONNECT_WAIT;
        while streams.iter().any(Option::is_none) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Some((node, stream)) = Self::greet(cluster, peers, stream, &streams)? {
                        streams[node as usize - 1] = Some(stream);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let missing: Vec<String> = (1..cluster.nodes)
                            .filter(|k| streams[*k as usize - 1].is_none())
                            .map(|k| k.to_string())
                            .collect();
                        return Err(Error::usage(format!(
                            "--coordinator {}: node(s) {} did not connect within {} s",
                            cluster.coordinator,
                            missing.join(", "),
                            CONNECT_WAIT.as_secs()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(Error::usage(format!("--coordinator: accept: {e}"))),
            }
        }
        Ok(streams.into_iter().flatten().collect())
    }

    /// Node 0 checks a newcomer's hello and answers it: empty (welcome) or why not, which both
    /// sides then report. `None`: not a node of ours (a port scanner, another program), ignored.
    fn greet(
        cluster: &Cluster,
        peers: usize,
        mut stream: TcpStream,
        joined: &[Option<TcpStream>],
    ) -> Result<Option<(u32, TcpStream)>> {
        let refuse = |stream: &mut TcpStream, why: String| {
            let _ = send(stream, why.as_bytes());
            Error::usage(format!("--coordinator {}: {why}", cluster.coordinator))
        };
        stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(30))))
            .map_err(|e| Error::usage(format!("--coordinator: {e}")))?;
        let hello = receive(&mut stream, 64).ok();
        let Some([node, nodes, their_peers]) = hello.as_deref().and_then(read_hello) else {
            return Ok(None);
        };
        let why = if nodes != cluster.nodes {
            Some(format!(
                "node {node} was started with --num-nodes {nodes}, node 0 with {}",
                cluster.nodes
            ))
        } else if node == 0 || node >= nodes {
            Some(format!(
                "a node says it is node {node} (--num-nodes {nodes})"
            ))
        } else if joined[node as usize - 1].is_some() {
            Some(format!("two nodes say they are node {node}"))
        } else if their_peers as usize != peers {
            Some(format!(
                "node {node} has {their_peers} devices, node 0 has {peers}: give every node the same --devices"
            ))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(refuse(&mut stream, why));
        }
        send(&mut stream, &[]).map_err(|e| link_error(cluster, node, e))?;
        Ok(Some((node, stream)))
    }

    fn join(cluster: &Cluster, peers: usize) -> Result<TcpStream> {
        let address = cluster
            .coordinator
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                Error::usage(format!(
                    "--coordinator {}: unknown host",
                    cluster.coordinator
                ))
            })?;
        let deadline = Instant::now() + CONNECT_WAIT;
        let mut stream = loop {
            match TcpStream::connect_timeout(&address, Duration::from_secs(5)) {
                Ok(stream) => break stream,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => {
                    return Err(Error::usage(format!(
                        "--coordinator {}: node 0 did not answer within {} s: {e}",
                        cluster.coordinator,
                        CONNECT_WAIT.as_secs()
                    )));
                }
            }
        };
        stream
            .set_read_timeout(Some(CONNECT_WAIT))
            .map_err(|e| link_error(cluster, 0, e))?;
        send(&mut stream, &hello(cluster, peers)).map_err(|e| link_error(cluster, 0, e))?;
        let answer = receive(&mut stream, 4096).map_err(|e| link_error(cluster, 0, e))?;
        if !answer.is_empty() {
            return Err(Error::usage(format!(
                "--coordinator {}: node 0 refused this node: {}",
                cluster.coordinator,
                String::from_utf8_lossy(&answer)
            )));
        }
        Ok(stream)
    }

    /// The sum over the nodes of each node's `values` (the same length on every node), the
    /// same bits on every node: node 0 adds them in node order.
    pub fn sum(&mut self, values: Vec<f32>) -> Result<Vec<f32>> {
        let limit = 4 * values.len();
        let cluster = self.cluster.clone();
        if cluster.node != 0 {
            let stream = &mut self.streams[0];
            send(stream, &to_bytes(&values)).map_err(|e| link_error(&cluster, 0, e))?;
            let total = receive(stream, limit).map_err(|e| link_error(&cluster, 0, e))?;
            return check_length(&cluster, 0, from_bytes(&total), values.len());
        }
        let mut total = values;
        for (k, stream) in self.streams.iter_mut().enumerate() {
            let node = k as u32 + 1;
            let theirs = receive(stream, limit).map_err(|e| link_error(&cluster, node, e))?;
            let theirs = check_length(&cluster, node, from_bytes(&theirs), total.len())?;
            total.iter_mut().zip(&theirs).for_each(|(t, x)| *t += x);
        }
        let bytes = to_bytes(&total);
        for (k, stream) in self.streams.iter_mut().enumerate() {
            send(stream, &bytes).map_err(|e| link_error(&cluster, k as u32 + 1, e))?;
        }
        Ok(total)
    }
}

fn check_length(cluster: &Cluster, node: u32, values: Vec<f32>, want: usize) -> Result<Vec<f32>> {
    if values.len() == want {
        return Ok(values);
    }
    Err(link_error(
        cluster,
        node,
        format!(
            "it sent {} floats, this node has {want}: a different model or settings",
            values.len()
        ),
    ))
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// This process's link, made by the first group that needs it and kept for the process: every
/// training phase of a run (each seed's fine-tuning) goes over the one set of connections.
static LINK: Mutex<Option<NodeLink>> = Mutex::new(None);

/// Makes the link for `cluster` unless this process has it already.
pub fn connect(cluster: &Cluster, peers: usize) -> Result<()> {
    let mut link = LINK.lock().unwrap_or_else(|e| e.into_inner());
    if link.as_ref().is_some_and(|l| &l.cluster == cluster) {
        return Ok(());
    }
    *link = Some(NodeLink::connect(cluster, peers)?);
    Ok(())
}

/// The sum over the nodes, through this process's link (see [`connect`]). A failed link is
/// dropped: the nodes no longer agree on where they are.
pub fn sum_over_nodes<B: Backend>(node_sum: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
    let device = node_sum.device();
    let values: Vec<f32> = node_sum
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("f32 buffer");
    let n = values.len();
    let total = sum_floats_over_nodes(values)?;
    Ok(Tensor::from_data(TensorData::new(total, [n]), &device))
}

/// [`sum_over_nodes`] of floats on the host (evaluation's gathers, `pipeline::eval_peers`).
pub fn sum_floats_over_nodes(values: Vec<f32>) -> Result<Vec<f32>> {
    let mut guard = LINK.lock().unwrap_or_else(|e| e.into_inner());
    let link = guard
        .as_mut()
        .ok_or_else(|| Error::usage("the nodes' link is closed (an earlier error)"))?;
    link.sum(values).inspect_err(|_| *guard = None)
}

/// Where a peer is, compared between all peers before a group steps on: any difference means
/// two trainings would be mixed.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub phase: String,
    pub samples: usize,
    pub total_steps: usize,
    pub step: usize,
    /// FNV-1a of every parameter's bytes, in the module's order.
    pub parameters: u64,
}

/// Each field in floats that hold integers exactly (below 2^24), so a sum with zeros keeps them.
const CHUNK_BITS: u32 = 22;
const FIELDS: usize = 3 + 3 + 3 + 3 + 3;

fn chunks(value: u64) -> [f32; 3] {
    let mask = (1u64 << CHUNK_BITS) - 1;
    std::array::from_fn(|i| ((value >> (CHUNK_BITS * i as u32)) & mask) as f32)
}

fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

struct ParameterHash(u64);

impl<B: Backend> ModuleVisitor<B> for ParameterHash {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0 = fnv1a(self.0, param.val().into_data().as_bytes());
    }
}

impl Agreement {
    pub fn of<B: Backend, M: Module<B>>(
        phase: &str,
        (samples, total_steps, step): (usize, usize, usize),
        model: &M,
    ) -> Self {
        let mut hash = ParameterHash(FNV_OFFSET);
        model.visit(&mut hash);
        Agreement {
            phase: phase.to_string(),
            samples,
            total_steps,
            step,
            parameters: hash.0,
        }
    }

    fn floats(&self) -> Vec<f32> {
        let phase = fnv1a(FNV_OFFSET, self.phase.as_bytes());
        [
            phase,
            self.samples as u64,
            self.total_steps as u64,
            self.step as u64,
            self.parameters,
        ]
        .into_iter()
        .flat_map(chunks)
        .collect()
    }

    /// What differs between this peer's floats and another's, in words.
    fn differences(mine: &[f32], theirs: &[f32]) -> Vec<&'static str> {
        let names = ["phase", "training samples", "steps", "step", "parameters"];
        names
            .iter()
            .zip(mine.chunks(3).zip(theirs.chunks(3)))
            .filter(|(_, (a, b))| a != b)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Every peer's agreement summed into one buffer (each in its own slot) by `sum` (the sum
    /// over every peer of every node); an error when any differs from rank 0's. Every peer of
    /// the group calls it with its rank.
    pub fn check<B: Backend>(
        &self,
        rank: usize,
        set: &DeviceSet,
        device: &B::Device,
        sum: impl FnOnce(Tensor<B, 1>) -> Result<Tensor<B, 1>>,
    ) -> Result<()> {
        let world = set.world();
        let mut slots = vec![0.0f32; world * FIELDS];
        slots[rank * FIELDS..(rank + 1) * FIELDS].copy_from_slice(&self.floats());
        let tensor = Tensor::<B, 1>::from_data(TensorData::new(slots, [world * FIELDS]), device);
        let all: Vec<f32> = sum(tensor)?.into_data().to_vec().expect("f32 buffer");
        let leader = &all[..FIELDS];
        for (other, slot) in all.chunks(FIELDS).enumerate().skip(1) {
            let differs = Self::differences(leader, slot);
            if !differs.is_empty() {
                let node = other / set.peers();
                return Err(Error::usage(format!(
                    "{}: node {node} (rank {other}) is not where node 0 is: its {} differ; \
                     every node needs the same data, settings and run-folder state",
                    self.phase,
                    differs.join(", ")
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_fields_survive_a_sum_with_zeros_and_name_what_differs() {
        let a = Agreement {
            phase: "fine-tune".into(),
            samples: 241,
            total_steps: 16,
            step: 8,
            parameters: u64::MAX - 12345,
        };
        let floats = a.floats();
        assert_eq!(floats.len(), FIELDS);
        let summed: Vec<f32> = floats.iter().map(|x| x + 0.0).collect();
        assert_eq!(summed, floats);
        assert!(
            floats
                .iter()
                .all(|x| x.fract() == 0.0 && *x < (1 << 24) as f32)
        );
        let b = Agreement {
            step: 9,
            parameters: 7,
            ..a.clone()
        };
        assert_eq!(
            Agreement::differences(&floats, &b.floats()),
            ["step", "parameters"]
        );
    }

    fn node(node: u32, nodes: u32, port: u16) -> Cluster {
        Cluster {
            node,
            nodes,
            coordinator: format!("127.0.0.1:{port}"),
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port()
    }

    /// Three nodes (threads here) sum their buffers: every node gets the same bits, in node
    /// order; a node with the wrong number of devices is refused by name.
    #[test]
    fn three_nodes_sum_through_node_zero() {
        let port = free_port();
        let totals: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let nodes: Vec<_> = (0..3u32)
                .map(|k| {
                    scope.spawn(move || {
                        let mut link = NodeLink::connect(&node(k, 3, port), 2).unwrap();
                        let first = link.sum(vec![k as f32, 0.1, 1e8]).unwrap();
                        let second = link.sum(vec![1.0, 2.0, k as f32]).unwrap();
                        [first, second].concat()
                    })
                })
                .collect();
            nodes.into_iter().map(|n| n.join().unwrap()).collect()
        });
        let want = [
            3.0,
            (0.1f32 + 0.1) + 0.1,
            (1e8f32 + 1e8) + 1e8,
            3.0,
            6.0,
            3.0,
        ];
        for total in &totals {
            assert_eq!(total, &want);
        }

        let port = free_port();
        let (zero, one) = std::thread::scope(|scope| {
            let zero = scope.spawn(move || NodeLink::connect(&node(0, 2, port), 2).err());
            let one = scope.spawn(move || NodeLink::connect(&node(1, 2, port), 4).err());
            (zero.join().unwrap(), one.join().unwrap())
        });
        for e in [zero.unwrap(), one.unwrap()] {
            let e = e.to_string();
            assert!(e.contains("node 1 has 4 devices, node 0 has 2"), "{e}");
        }
    }

    #[test]
    fn a_node_that_stops_is_an_error_not_a_hang() {
        let port = free_port();
        let error = std::thread::scope(|scope| {
            let zero = scope.spawn(move || {
                let mut link = NodeLink::connect(&node(0, 2, port), 1).unwrap();
                link.sum(vec![1.0; 4]).err()
            });
            scope.spawn(move || drop(NodeLink::connect(&node(1, 2, port), 1).unwrap()));
            zero.join().unwrap()
        });
        let e = error.expect("node 1 left").to_string();
        assert!(e.contains("node 0: the link with node 1 failed"), "{e}");
        assert!(coordinator_port("10.0.0.1").is_err() && coordinator_port("h:0").is_err());
    }
}
