//! Server selection: one small trait, one implementation per algorithm.

use std::hash::{Hash, Hasher};
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

/// The client's address picks the server: sticky while the set of servers
/// up (and their weights) is unchanged. Like HAProxy's map-based `source`
/// hashing, each server takes a share of the hash space in proportion to
/// its weight (with equal weights: the address's hash modulo the number of
/// servers).
#[derive(Debug, Default)]
pub struct SourceHash;

impl Balancer for SourceHash {
    fn pick(&self, candidates: &[usize], client: IpAddr, load: &dyn Load) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        // FNV-style hashing through std's fixed-key SipHash: stable across processes.
        let mut h = std::hash::DefaultHasher::new();
        client.hash(&mut h);
        let hash = h.finish();
        let weights = candidates.iter().map(|&i| u64::from(load.weight(i).max(1)));
        let first = weights.clone().next().unwrap_or(1);
        if weights.clone().all(|w| w == first) {
            return Some(candidates[(hash % candidates.len() as u64) as usize]);
        }
        let mut slot = hash % weights.clone().sum::<u64>();
        for (&i, w) in candidates.iter().zip(weights) {
            if slot < w {
                return Some(i);
            }
            slot -= w;
        }
        candidates.last().copied()
    }
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
}
