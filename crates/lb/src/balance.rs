//! Server selection: one small trait, one implementation per algorithm.

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use webinfra_proxy::counter::Count;
use webinfra_topology::Algorithm;

/// What an algorithm may look at besides the candidates.
pub trait Load {
    /// Requests in flight to server `i`.
    fn in_flight(&self, i: usize) -> usize;
    /// Server `i`'s weight (1-256).
    fn weight(&self, i: usize) -> u32;
    /// A number naming server `i` that outlives a reload or a reordering of
    /// the file (a hash of its name), for the algorithms that map a client
    /// to a server; by default its index.
    fn key(&self, i: usize) -> u64 {
        i as u64
    }
}

/// Picks the server for a request.
pub trait Balancer: Send + Sync {
    /// Returns one of `candidates` (server indices, never empty when called
    /// with servers to choose from), or None when it is empty.
    fn pick(&self, candidates: &[usize], client: IpAddr, load: &dyn Load) -> Option<usize>;
}

/// The balancer for `algorithm`.
pub fn for_algorithm(algorithm: Algorithm) -> Box<dyn Balancer> {
    match algorithm {
        Algorithm::RoundRobin => Box::new(RoundRobin::default()),
        Algorithm::WeightedRoundRobin => Box::new(WeightedRoundRobin::default()),
        Algorithm::LeastConnections => Box::new(LeastConnections::default()),
        Algorithm::PowerOfTwo => Box::new(PowerOfTwo),
        Algorithm::SourceHash => Box::new(SourceHash),
    }
}

/// Each server in turn (HAProxy's `roundrobin` with equal weights).
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Balancer for RoundRobin {
    fn pick(&self, candidates: &[usize], _: IpAddr, _: &dyn Load) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let n = self.next.bump();
        Some(candidates[n % candidates.len()])
    }
}

/// Smooth weighted round robin (nginx's): a 3:1 pair goes a a b a, not a a a b.
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    /// Current weight per server index.
    current: Mutex<Vec<i64>>,
}

impl Balancer for WeightedRoundRobin {
    fn pick(&self, candidates: &[usize], _: IpAddr, load: &dyn Load) -> Option<usize> {
        let mut current = self.current.lock().expect("wrr lock");
        let max = *candidates.iter().max()?;
        if current.len() <= max {
            current.resize(max + 1, 0);
        }
        let total: i64 = candidates.iter().map(|&i| i64::from(load.weight(i))).sum();
        for &i in candidates {
            current[i] += i64::from(load.weight(i));
        }
        let best = *candidates
            .iter()
            .max_by_key(|&&i| (current[i], std::cmp::Reverse(i)))?;
        current[best] -= total;
        Some(best)
    }
}

/// True when server `a` is less loaded than `b` for its weight: fewer
/// requests in flight, counting the one to be sent, per unit of weight
/// (HAProxy's `leastconn` and nginx's `least_conn` weigh servers this way).
fn lighter(load: &dyn Load, a: usize, b: usize) -> bool {
    let cost = |i: usize| {
        (
            load.in_flight(i) as u64 + 1,
            u64::from(load.weight(i).max(1)),
        )
    };
    let ((na, wa), (nb, wb)) = (cost(a), cost(b));
    na * wb < nb * wa
}

/// Fewest requests in flight for its weight; ties go round robin.
#[derive(Debug, Default)]
pub struct LeastConnections {
    next: AtomicUsize,
}

impl Balancer for LeastConnections {
    fn pick(&self, candidates: &[usize], _: IpAddr, load: &dyn Load) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let start = self.next.bump() % candidates.len();
        (0..candidates.len())
            .map(|k| candidates[(start + k) % candidates.len()])
            .reduce(|best, i| if lighter(load, i, best) { i } else { best })
    }
}

/// Two random candidates, the one less loaded for its weight.
#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl Balancer for PowerOfTwo {
    fn pick(&self, candidates: &[usize], _: IpAddr, load: &dyn Load) -> Option<usize> {
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let a = rand::random_range(0..n);
                let b = (a + 1 + rand::random_range(0..n - 1)) % n;
                let (a, b) = (candidates[a], candidates[b]);
                Some(if lighter(load, b, a) { b } else { a })
            }
        }
    }
}

/// The client's address picks the server, by rendezvous (highest random
/// weight) hashing, like HAProxy's `source` with `hash-type consistent`:
/// each server scores the address, the best score wins. A client stays on
/// its server while that server is up, whatever happens to the others;
/// when it goes, only its clients move (spread over the rest), and they
/// come back with it. Weights use the logarithmic method (a server of
/// weight 3 wins three times as many addresses as one of weight 1). The
/// hashes are our own (FNV-1a, SplitMix64), so every build and every load
/// balancer of an active-active pair maps an address the same way.
#[derive(Debug, Default)]
pub struct SourceHash;

impl Balancer for SourceHash {
    fn pick(&self, candidates: &[usize], client: IpAddr, load: &dyn Load) -> Option<usize> {
        let address = match client {
            IpAddr::V4(a) => fnv1a(&a.octets()),
            IpAddr::V6(a) => fnv1a(&a.octets()),
        };
        let score = |i: usize| {
            // A uniform draw in (0, 1) from the pair, then -w / ln(u).
            let h = mix(address ^ mix(load.key(i)));
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            f64::from(load.weight(i).max(1)) / -u.ln()
        };
        candidates
            .iter()
            .copied()
            .max_by(|&a, &b| score(a).total_cmp(&score(b)))
    }
}

/// FNV-1a, 64 bits: a stable hash of a few bytes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed {
        in_flight: Vec<usize>,
        weights: Vec<u32>,
    }

    impl Load for Fixed {
        fn in_flight(&self, i: usize) -> usize {
            self.in_flight[i]
        }
        fn weight(&self, i: usize) -> u32 {
            self.weights[i]
        }
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    fn picks(b: &dyn Balancer, candidates: &[usize], load: &Fixed, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| b.pick(candidates, CLIENT, load).unwrap())
            .collect()
    }

    #[test]
    fn round_robin_alternates_over_candidates() {
        let load = Fixed {
            in_flight: vec![0; 3],
            weights: vec![1; 3],
        };
        assert_eq!(
            picks(&RoundRobin::default(), &[0, 2], &load, 4),
            [0, 2, 0, 2]
        );
        assert_eq!(RoundRobin::default().pick(&[], CLIENT, &load), None);
    }

    #[test]
    fn weighted_round_robin_is_proportional_and_smooth() {
        let load = Fixed {
            in_flight: vec![0; 2],
            weights: vec![3, 1],
        };
        let got = picks(&WeightedRoundRobin::default(), &[0, 1], &load, 8);
        assert_eq!(got, [0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn least_connections_takes_the_least_loaded() {
        let load = Fixed {
            in_flight: vec![5, 1, 3],
            weights: vec![1; 3],
        };
        assert_eq!(
            picks(&LeastConnections::default(), &[0, 1, 2], &load, 3),
            [1, 1, 1]
        );
        let even = Fixed {
            in_flight: vec![0, 0],
            weights: vec![1; 2],
        };
        let mut got = picks(&LeastConnections::default(), &[0, 1], &even, 4);
        got.sort();
        assert_eq!(got, [0, 0, 1, 1], "ties rotate");
    }

    #[test]
    fn least_connections_weighs_the_load() {
        // 6 in flight on a weight-3 server is as loaded as 2 on a weight-1 one.
        let load = Fixed {
            in_flight: vec![6, 2],
            weights: vec![3, 1],
        };
        assert_eq!(
            picks(&LeastConnections::default(), &[0, 1], &load, 2),
            [0, 0],
            "(6+1)/3 is lighter than (2+1)/1"
        );
        let idle = Fixed {
            in_flight: vec![0, 0],
            weights: vec![1, 4],
        };
        assert_eq!(
            picks(&LeastConnections::default(), &[0, 1], &idle, 2),
            [1, 1]
        );
    }

    #[test]
    fn power_of_two_never_picks_the_most_loaded_of_two() {
        let load = Fixed {
            in_flight: vec![9, 0],
            weights: vec![1; 2],
        };
        assert!(picks(&PowerOfTwo, &[0, 1], &load, 50)
            .iter()
            .all(|&i| i == 1));
        assert_eq!(PowerOfTwo.pick(&[1], CLIENT, &load), Some(1));
        let weighted = Fixed {
            in_flight: vec![4, 1],
            weights: vec![8, 1],
        };
        assert!(picks(&PowerOfTwo, &[0, 1], &weighted, 50)
            .iter()
            .all(|&i| i == 0));
    }

    #[test]
    fn source_hash_is_sticky_per_client() {
        let load = Fixed {
            in_flight: vec![0; 4],
            weights: vec![1; 4],
        };
        let first = SourceHash.pick(&[0, 1, 2, 3], CLIENT, &load).unwrap();
        assert!(picks(&SourceHash, &[0, 1, 2, 3], &load, 20)
            .iter()
            .all(|&i| i == first));
        let others: std::collections::HashSet<usize> = (1..=50u8)
            .map(|n| {
                SourceHash
                    .pick(&[0, 1, 2, 3], IpAddr::from([10, 0, 1, n]), &load)
                    .unwrap()
            })
            .collect();
        assert!(others.len() > 1, "different clients spread");
    }

    #[test]
    fn source_hash_shares_clients_by_weight() {
        let load = Fixed {
            in_flight: vec![0; 2],
            weights: vec![3, 1],
        };
        let mut counts = [0usize; 2];
        for n in 0..4000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            counts[SourceHash.pick(&[0, 1], client, &load).unwrap()] += 1;
        }
        // About 3,000 and 1,000.
        assert!((2700..=3300).contains(&counts[0]), "{counts:?}");
        let sticky = SourceHash.pick(&[0, 1], CLIENT, &load);
        assert!(picks(&SourceHash, &[0, 1], &load, 10)
            .iter()
            .all(|&i| Some(i) == sticky));
    }

    /// The server each of `n` client addresses goes to.
    fn mapping(candidates: &[usize], load: &dyn Load, n: u32) -> Vec<usize> {
        (0..n)
            .map(|k| {
                let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + k));
                SourceHash.pick(candidates, client, load).unwrap()
            })
            .collect()
    }

    #[test]
    fn source_hash_moves_only_the_clients_of_a_server_that_goes() {
        let load = Fixed {
            in_flight: vec![0; 4],
            weights: vec![1; 4],
        };
        let all = mapping(&[0, 1, 2, 3], &load, 2000);
        for server in 0..4 {
            let share = all.iter().filter(|&&s| s == server).count();
            assert!(
                (400..=600).contains(&share),
                "server {server}: {share} of 2000"
            );
        }
        let without_2 = mapping(&[0, 1, 3], &load, 2000);
        let mut moved_to = std::collections::HashSet::new();
        for (before, after) in all.iter().zip(&without_2) {
            if *before == 2 {
                moved_to.insert(*after);
            } else {
                assert_eq!(before, after, "a client of a server still up moved");
            }
        }
        assert_eq!(moved_to.len(), 3, "the clients of 2 spread over the rest");
        // When 2 comes back, its clients return and nobody else moves.
        assert_eq!(mapping(&[0, 1, 2, 3], &load, 2000), all);
    }

    /// Servers known by name, in any order.
    struct Named(Vec<&'static str>);

    impl Load for Named {
        fn in_flight(&self, _: usize) -> usize {
            0
        }
        fn weight(&self, _: usize) -> u32 {
            1
        }
        fn key(&self, i: usize) -> u64 {
            fnv1a(self.0[i].as_bytes())
        }
    }

    #[test]
    fn source_hash_follows_the_server_names_not_their_order() {
        let ab = Named(vec!["a", "b", "c"]);
        let ba = Named(vec!["c", "b", "a"]);
        let name = |load: &Named, picks: Vec<usize>| -> Vec<&str> {
            picks.into_iter().map(|i| load.0[i]).collect()
        };
        assert_eq!(
            name(&ab, mapping(&[0, 1, 2], &ab, 300)),
            name(&ba, mapping(&[0, 1, 2], &ba, 300))
        );
    }
}
