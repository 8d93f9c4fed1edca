//! Execution segments: k6's arithmetic for splitting one test across processes exactly.
//!
//! A segment is a half-open share `[from, to)` of the whole (rationals, so no float drift).
//! All shards of a run use the same *sequence* of boundaries (`0, 1/3, 2/3, 1` for
//! `--segment i/3`). Over the sequence we build a striped pattern of length L (the least common
//! denominator): position p belongs to the sequence part whose turn it is under smooth weighted
//! round-robin, so every part gets exactly `L·width` positions, evenly spread (the same idea as
//! k6's `ExecutionTuple` striping). Index j of the full plan (a VU index, an iteration index)
//! belongs to `pattern[j mod L]`. Hence:
//!
//! - every index belongs to exactly one segment of the sequence (an exact partition, for any
//!   count and for open-ended iteration streams),
//! - a segment's share of the first n indices is within one stripe of `n·width`, and the shares
//!   of all segments sum to n exactly,
//! - assignment is deterministic: the same flags give the same split on every machine.

use std::fmt;

/// A non-negative fraction in lowest terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rational {
    pub num: u64,
    pub den: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Rational {
    pub const ZERO: Rational = Rational { num: 0, den: 1 };
    pub const ONE: Rational = Rational { num: 1, den: 1 };

    pub fn new(num: u64, den: u64) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        Some(Rational {
            num: num / g,
            den: den / g,
        })
    }

    /// Parses `1/4`, `0.25`, `25%`, `0` or `1`.
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let r = Self::parse(p)?;
            return Rational::new(r.num, r.den.checked_mul(100)?);
        }
        if let Some((n, d)) = t.split_once('/') {
            return Rational::new(n.trim().parse().ok()?, d.trim().parse().ok()?);
        }
        if let Some((int, frac)) = t.split_once('.') {
            if frac.is_empty() || frac.len() > 12 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let den = 10u64.pow(frac.len() as u32);
            let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
            let frac: u64 = frac.parse().ok()?;
            return Rational::new(int.checked_mul(den)?.checked_add(frac)?, den);
        }
        Rational::new(t.parse().ok()?, 1)
    }

    fn cmp_key(self, other: Self) -> std::cmp::Ordering {
        (self.num as u128 * other.den as u128).cmp(&(other.num as u128 * self.den as u128))
    }
}

impl PartialOrd for Rational {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Rational {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.cmp_key(*other)
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// A share `[from, to)` of the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Segment {
    pub from: Rational,
    pub to: Rational,
}

impl Segment {
    pub const WHOLE: Segment = Segment {
        from: Rational::ZERO,
        to: Rational::ONE,
    };

    /// `i/N` (1-based): `[(i-1)/N, i/N)`.
    pub fn nth(i: u64, n: u64) -> Result<Self, String> {
        if n == 0 || i == 0 || i > n {
            return Err(format!(
                "'{i}/{n}' is not a segment: i must be between 1 and N"
            ));
        }
        Ok(Segment {
            from: Rational::new(i - 1, n).expect("n > 0"),
            to: Rational::new(i, n).expect("n > 0"),
        })
    }

    /// k6's `--execution-segment`: `1/4:2/4`, `0.25:0.5`, `25%:50%`, or one value `x` = `0:x`.
    pub fn parse_k6(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("'{s}' is not an execution segment: {why}");
        let (a, b) = match s.split_once(':') {
            Some((a, b)) => (a, b),
            None => ("0", s),
        };
        let from = Rational::parse(a).ok_or_else(|| bad("cannot read the start"))?;
        let to = Rational::parse(b).ok_or_else(|| bad("cannot read the end"))?;
        if from >= to || to > Rational::ONE {
            return Err(bad("write FROM:TO with 0 <= FROM < TO <= 1, e.g. 1/4:2/4"));
        }
        Ok(Segment { from, to })
    }

    /// The canonical k6 spelling `from:to`.
    pub fn k6(&self) -> String {
        format!("{}:{}", self.from, self.to)
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.k6())
    }
}

/// Parses k6's `--execution-segment-sequence "0,1/4,2/4,1"`.
pub fn parse_sequence(s: &str) -> Result<Vec<Rational>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let r = Rational::parse(part).ok_or_else(|| {
            format!("'{part}' in the execution segment sequence is not a fraction")
        })?;
        if r > Rational::ONE {
            return Err(format!(
                "'{part}' in the execution segment sequence is above 1"
            ));
        }
        if out.last().is_some_and(|l| r <= *l) {
            return Err(format!(
                "execution segment sequence '{s}' must be strictly increasing"
            ));
        }
        out.push(r);
    }
    if out.first() != Some(&Rational::ZERO) {
        out.insert(0, Rational::ZERO);
    }
    if out.last() != Some(&Rational::ONE) {
        out.push(Rational::ONE);
    }
    Ok(out)
}

/// Longest striping pattern accepted (the LCD of the sequence).
const MAX_PATTERN: u64 = 1 << 20;

/// A segment placed in its sequence, with the striped pattern: answers "is index j mine?" and
/// "how many of the first n indices are mine?" in O(1).
#[derive(Debug, Clone)]
pub struct SegmentPlan {
    pub segment: Segment,
    /// Label used on signals and in summaries (`2/3` or `1/4:2/4`).
    pub label: String,
    /// `mine[p]`: does pattern position p belong to this segment.
    mine: Vec<bool>,
    /// `prefix[p]`: positions < p that are mine.
    prefix: Vec<u64>,
}

impl SegmentPlan {
    /// The whole plan as one segment (everything is mine).
    pub fn whole() -> Self {
        Self::new(Segment::WHOLE, &[Rational::ZERO, Rational::ONE], "").expect("valid")
    }

    /// `segment` must start and end on boundaries of `sequence` (it may span several parts).
    pub fn new(segment: Segment, sequence: &[Rational], label: &str) -> Result<Self, String> {
        let lo = sequence.iter().position(|r| *r == segment.from);
        let hi = sequence.iter().position(|r| *r == segment.to);
        let (Some(lo), Some(hi)) = (lo, hi) else {
            return Err(format!(
                "segment {segment} is not in the execution segment sequence {}",
                sequence
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        };
        let lcd = sequence.iter().try_fold(1u64, |acc, r| {
            let l = acc / gcd(acc, r.den) * r.den;
            (l <= MAX_PATTERN).then_some(l)
        });
        let lcd = lcd.ok_or_else(|| {
            format!("the execution segment sequence needs a pattern longer than {MAX_PATTERN}; use simpler fractions")
        })?;
        // widths in units of 1/lcd
        let weights: Vec<i64> = sequence
            .windows(2)
            .map(|w| (w[1].num * (lcd / w[1].den) - w[0].num * (lcd / w[0].den)) as i64)
            .collect();
        // smooth weighted round-robin: each part gets exactly `weight` turns per lcd, evenly spread
        let mut current = vec![0i64; weights.len()];
        let mut mine = Vec::with_capacity(lcd as usize);
        for _ in 0..lcd {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let mut best = 0;
            for i in 1..current.len() {
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= lcd as i64;
            mine.push(best >= lo && best < hi);
        }
        let mut prefix = Vec::with_capacity(mine.len() + 1);
        let mut n = 0;
        prefix.push(0);
        for m in &mine {
            n += u64::from(*m);
            prefix.push(n);
        }
        Ok(SegmentPlan {
            segment,
            label: label.to_string(),
            mine,
            prefix,
        })
    }

    /// From the CLI: `--segment i/N`, or k6's `--execution-segment` with an optional
    /// `--execution-segment-sequence` (default: the segment and its complement parts).
    pub fn from_flags(
        segment: Option<&str>,
        k6_segment: Option<&str>,
        k6_sequence: Option<&str>,
    ) -> Result<Option<Self>, String> {
        match (segment, k6_segment) {
            (Some(_), Some(_)) => {
                Err("give --segment or --execution-segment, not both".to_string())
            }
            (Some(s), None) => {
                let (i, n) = s
                    .split_once('/')
                    .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)))
                    .ok_or_else(|| format!("'{s}' is not i/N (e.g. --segment 2/4)"))?;
                let seg = Segment::nth(i, n)?;
                let seq: Vec<Rational> = (0..=n)
                    .map(|k| Rational::new(k, n).expect("n > 0"))
                    .collect();
                if k6_sequence.is_some() {
                    return Err("--execution-segment-sequence goes with --execution-segment, not --segment i/N".into());
                }
                Self::new(seg, &seq, &format!("{i}/{n}")).map(Some)
            }
            (None, Some(k)) => {
                let seg = Segment::parse_k6(k)?;
                let seq = match k6_sequence {
                    Some(q) => parse_sequence(q)?,
                    None => {
                        let mut v = vec![Rational::ZERO, seg.from, seg.to, Rational::ONE];
                        v.dedup();
                        v
                    }
                };
                Self::new(seg, &seq, &seg.k6()).map(Some)
            }
            (None, None) if k6_sequence.is_some() => {
                Err("--execution-segment-sequence needs --execution-segment".into())
            }
            (None, None) => Ok(None),
        }
    }

    /// Does index `j` of the full plan belong to this segment?
    pub fn owns(&self, j: u64) -> bool {
        self.mine[(j % self.mine.len() as u64) as usize]
    }

    /// How many of the indices `0..n` belong to this segment (k6's `ScaleInt64`).
    pub fn scale(&self, n: u64) -> u64 {
        let l = self.mine.len() as u64;
        (n / l) * self.prefix[l as usize] + self.prefix[(n % l) as usize]
    }

    /// This segment's exact fraction of the whole.
    pub fn width(&self) -> f64 {
        self.segment.to.num as f64 / self.segment.to.den as f64
            - self.segment.from.num as f64 / self.segment.from.den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ArrivalSchedule, Executor};
    use std::time::Duration;

    fn shards(n: u64) -> Vec<SegmentPlan> {
        (1..=n)
            .map(|i| {
                SegmentPlan::from_flags(Some(&format!("{i}/{n}")), None, None)
                    .unwrap()
                    .unwrap()
            })
            .collect()
    }

    fn assert_partition(plans: &[SegmentPlan], count: u64) {
        for j in 0..count {
            let owners = plans.iter().filter(|p| p.owns(j)).count();
            assert_eq!(owners, 1, "index {j} has {owners} owners");
        }
        let sum: u64 = plans.iter().map(|p| p.scale(count)).sum();
        assert_eq!(sum, count);
        for p in plans {
            let direct = (0..count).filter(|j| p.owns(*j)).count() as u64;
            assert_eq!(p.scale(count), direct);
            // evenly spread: within one of the exact share
            let exact = count as f64 * p.width();
            assert!(
                (p.scale(count) as f64 - exact).abs() < 1.0 + 1e-9,
                "{}: {} vs {exact}",
                p.label,
                p.scale(count)
            );
        }
    }

    #[test]
    fn seven_vus_over_three_segments() {
        let p = shards(3);
        assert_partition(&p, 7);
        let counts: Vec<u64> = p.iter().map(|s| s.scale(7)).collect();
        assert_eq!(counts.iter().sum::<u64>(), 7);
        assert!(counts.iter().all(|c| *c == 2 || *c == 3), "{counts:?}");
    }

    #[test]
    fn thousand_iterations_over_three() {
        let p = shards(3);
        assert_partition(&p, 1000);
        let mut counts: Vec<u64> = p.iter().map(|s| s.scale(1000)).collect();
        counts.sort();
        assert_eq!(counts, vec![333, 333, 334]);
    }

    #[test]
    fn every_count_partitions_for_uneven_sequences() {
        let seq = parse_sequence("0,1/4,2/5,1").unwrap();
        let plans: Vec<SegmentPlan> = seq
            .windows(2)
            .map(|w| {
                SegmentPlan::new(
                    Segment {
                        from: w[0],
                        to: w[1],
                    },
                    &seq,
                    "",
                )
                .unwrap()
            })
            .collect();
        for n in [0, 1, 2, 7, 19, 20, 21, 99, 1234] {
            assert_partition(&plans, n);
        }
    }

    #[test]
    fn arrival_rate_ten_per_second_over_four_segments() {
        // 10/s for 10 s = 100 iterations; each segment starts exactly its indices
        let ex = Executor::ConstantArrivalRate {
            rate: 10.0,
            time_unit: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            pre_allocated_vus: 1,
            max_vus: 1,
        };
        let mut s = ArrivalSchedule::new(&ex).unwrap();
        let all: Vec<Duration> = (0..).map_while(|k| s.start_of(k)).collect();
        assert_eq!(all.len(), 100);
        let p = shards(4);
        assert_partition(&p, all.len() as u64);
        let mut union: Vec<Duration> = Vec::new();
        for seg in &p {
            let mine: Vec<Duration> = all
                .iter()
                .enumerate()
                .filter(|(k, _)| seg.owns(*k as u64))
                .map(|(_, d)| *d)
                .collect();
            assert_eq!(mine.len(), 25, "{}: rate 2.5/s", seg.label);
            // spread evenly: gaps of 0.4 s
            for w in mine.windows(2) {
                assert!(((w[1] - w[0]).as_secs_f64() - 0.4).abs() < 1e-6);
            }
            union.extend(mine);
        }
        union.sort();
        assert_eq!(union, all);
    }

    #[test]
    fn k6_segment_spellings() {
        let a = SegmentPlan::from_flags(None, Some("1/4:2/4"), Some("0,1/4,2/4,3/4,1"))
            .unwrap()
            .unwrap();
        assert_eq!(a.label, "1/4:1/2");
        assert_eq!(a.scale(100), 25);
        let b = SegmentPlan::from_flags(None, Some("25%:0.5"), None)
            .unwrap()
            .unwrap();
        assert_eq!(b.segment, a.segment);
        let whole = SegmentPlan::from_flags(None, Some("1"), None)
            .unwrap()
            .unwrap();
        assert_eq!(whole.scale(17), 17);
        assert!(SegmentPlan::from_flags(None, Some("1/2:1/4"), None).is_err());
        assert!(SegmentPlan::from_flags(Some("4/3"), None, None).is_err());
        assert!(SegmentPlan::from_flags(Some("0/3"), None, None).is_err());
        assert!(SegmentPlan::from_flags(Some("x"), None, None).is_err());
        assert!(SegmentPlan::from_flags(None, Some("1/3:2/3"), Some("0,1/4,1")).is_err());
        // a segment may span several parts of the sequence
        let c = SegmentPlan::from_flags(None, Some("0:1/2"), Some("0,1/4,1/2,1"))
            .unwrap()
            .unwrap();
        assert_eq!(c.scale(8), 4);
        assert_eq!(SegmentPlan::whole().scale(5), 5);
    }
}
