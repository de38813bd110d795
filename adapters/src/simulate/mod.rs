//! Deterministic synthetic exports of all six agencies, in their native formats.
//!
//! `gateway simulate` and the benchmarks need realistic exports at the scale of a
//! real city (Wuhu: ≈14,000 enterprises, ≈420,000 persons, ≈10,000 of them in
//! hardship by their contribution and housing data), with the warts of the
//! interface specification and a small share (≈0.5 %) of deliberately bad rows,
//! without shipping real personal data. Everything derives from one seed through
//! a self-contained PRNG ([`rng`]), so a seed always gives the same bytes; rows are
//! written one by one through a [`Write`], so memory stays flat whatever the scale.
//! Every bad row is recorded ([`ExportStats::bad_rows`]) with the field and code
//! the adapter must reject it with, which makes the output self-checking.

mod format;
mod rng;
mod world;

#[cfg(test)]
mod tests;

pub use world::Scale;

use crate::{Agency, RowErrorCode};
use format::{Fault, Row, V};
use rng::Rng;
use std::io::{self, Write};
use std::path::Path;
use world::{Person, STREETS, World, stream};

/// What was written for one agency.
#[derive(Debug, Clone)]
pub struct ExportStats {
    pub agency: Agency,
    /// `<agency>.<ext>`.
    pub file_name: String,
    /// Data rows (header excluded).
    pub rows: u64,
    pub bytes: u64,
    /// The rows that were made bad on purpose, in file order.
    pub bad_rows: Vec<BadRow>,
}

/// A deliberately bad row: its 1-based number in the file (header excluded), and
/// the field and code the adapter must reject it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRow {
    pub row: u64,
    pub field: &'static str,
    pub code: RowErrorCode,
}

/// The file name of an agency's export: `public_security.jsonl`, `hrss.csv`, …
pub fn file_name(agency: Agency) -> String {
    let csv = crate::adapter_for(agency).is_some_and(|a| a.format().is_csv());
    format!("{}.{}", agency.id(), if csv { "csv" } else { "jsonl" })
}

/// A simulated city, ready to write any agency's export.
pub struct Simulation {
    world: World,
}

impl Simulation {
    pub fn new(seed: u64, scale: Scale) -> Simulation {
        Simulation {
            world: World::new(seed, scale),
        }
    }

    /// Writes one agency's export to `out`, row by row.
    pub fn write<W: Write>(&self, agency: Agency, out: W) -> io::Result<ExportStats> {
        let mut sink = Sink {
            out,
            buf: Vec::with_capacity(1024),
            stats: ExportStats {
                agency,
                file_name: file_name(agency),
                rows: 0,
                bytes: 0,
                bad_rows: Vec::new(),
            },
            agency,
            faults: faults(agency),
        };
        let w = &self.world;
        match agency {
            Agency::PublicSecurity => public_security(w, &mut sink)?,
            Agency::Hrss => hrss(w, &mut sink)?,
            Agency::MarketRegulation => market_regulation(w, &mut sink)?,
            Agency::Tax => tax(w, &mut sink)?,
            Agency::Housing => housing(w, &mut sink)?,
            Agency::WorkSafety => work_safety(w, &mut sink)?,
        }
        sink.out.flush()?;
        Ok(sink.stats)
    }

    /// Persons in hardship in this city (by construction; for summaries).
    pub fn hardship_persons(&self) -> u64 {
        (0..self.world.persons)
            .filter(|&i| self.world.person(i).hardship)
            .count() as u64
    }
}

/// Writes all six exports into `dir` (created if needed), one thread per file.
pub fn simulate_to_dir(dir: &Path, seed: u64, scale: Scale) -> io::Result<Vec<ExportStats>> {
    std::fs::create_dir_all(dir)?;
    let sim = Simulation::new(seed, scale);
    std::thread::scope(|s| {
        let handles: Vec<_> = Agency::ALL
            .into_iter()
            .map(|agency| {
                let sim = &sim;
                s.spawn(move || -> io::Result<ExportStats> {
                    let file = std::fs::File::create(dir.join(file_name(agency)))?;
                    sim.write(agency, io::BufWriter::with_capacity(1 << 20, file))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a simulator thread failed")))
            })
            .collect()
    })
}

/// The ways each agency's bad rows are made bad: (field, fault).
fn faults(agency: Agency) -> &'static [(&'static str, Fault)] {
    match agency {
        Agency::PublicSecurity => &[
            ("GMSFHM", Fault::IdChecksum),
            ("HJDZ_XZQHDM", Fault::AreaCode),
            ("XM", Fault::Missing),
            ("BGLX", Fault::UnknownCode("4")),
            ("YHZGX", Fault::UnknownCode("03")),
        ],
        Agency::Hrss => &[
            ("GMSFHM", Fault::IdChecksum),
            ("TYSHXYDM", Fault::UsccChecksum),
            ("JFJS", Fault::BadAmount),
            ("JFNY", Fault::BadDate("202513")),
            ("XZLX", Fault::UnknownCode("999")),
            ("XM", Fault::Encoding),
        ],
        Agency::MarketRegulation => &[
            ("TYSHXYDM", Fault::UsccChecksum),
            ("HYDM", Fault::UnknownCode("Z99")),
            ("ZS_XZQHDM", Fault::AreaCode),
            ("CLRQ", Fault::BadDate("20230229")),
            ("QYMC", Fault::Missing),
        ],
        Agency::Tax => &[
            ("TYSHXYDM", Fault::UsccChecksum),
            ("YYSR", Fault::BadAmount),
            ("NSXYDJ", Fault::UnknownCode("E")),
            ("NSRZT", Fault::UnknownCode("04")),
        ],
        Agency::Housing => &[
            ("SQRZJHM", Fault::IdChecksum),
            ("LXDH", Fault::BadPhone),
            ("FWDZ_XZQHDM", Fault::AreaCode),
            ("JTRKS", Fault::OutOfRange("0")),
            ("SQRQ", Fault::BadDate("2025-02-30")),
        ],
        Agency::WorkSafety => &[
            ("SSRZJHM", Fault::IdChecksum),
            ("TYSHXYDM", Fault::UsccChecksum),
            ("SGLX", Fault::UnknownCode("21")),
            ("SHCD", Fault::UnknownCode("4")),
            ("SGRQ", Fault::BadDate("20241301")),
        ],
    }
}

/// Share of bad rows, parts per million.
const BAD_PPM: u32 = 5_000;

struct Sink<W> {
    out: W,
    buf: Vec<u8>,
    stats: ExportStats,
    agency: Agency,
    faults: &'static [(&'static str, Fault)],
}

impl<W: Write> Sink<W> {
    fn header(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.stats.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes a row, first making it bad with probability [`BAD_PPM`].
    fn row(&mut self, mut row: Row, r: &mut Rng) -> io::Result<()> {
        self.stats.rows += 1;
        if r.ppm(BAD_PPM) {
            let (field, fault) = *r.pick(self.faults);
            fault.apply(&mut row, field);
            self.stats.bad_rows.push(BadRow {
                row: self.stats.rows,
                field,
                code: fault.code(),
            });
        }
        self.buf.clear();
        match self.agency {
            Agency::Hrss | Agency::Tax => {
                let (fields, bad) = format::csv_fields(&row);
                format::write_csv(&mut self.buf, &fields, self.agency == Agency::Hrss, bad);
            }
            _ => format::write_json(&mut self.buf, &row),
        }
        self.out.write_all(&self.buf)?;
        self.stats.bytes += self.buf.len() as u64;
        Ok(())
    }
}

/// Change timestamps fall between 2024-01-01 and 2025-10-31 (Beijing time).
fn change_seconds(r: &mut Rng) -> i64 {
    let start = format::local_seconds(2024, 1, 1);
    let end = format::local_seconds(2025, 10, 31);
    r.range(start, end - 1)
}

fn address(r: &mut Rng) -> String {
    format!(
        "芜湖市{}{}号{}栋{}室",
        r.pick(STREETS),
        r.range(1, 400),
        r.range(1, 30),
        r.range(101, 2604)
    )
}

fn division(r: &mut Rng) -> &'static str {
    crate::rules::WUHU_DIVISIONS[r.below(8) as usize].0
}

fn row_rng(w: &World, agency: Agency, i: u64) -> Rng {
    Rng::derive(w.seed, stream::ROW + agency as u64, i)
}

// ─────────────────────────────── public security ───────────────────────────────

fn public_security<W: Write>(w: &World, sink: &mut Sink<W>) -> io::Result<()> {
    for i in 0..w.persons {
        let p = w.person(i);
        let mut r = row_rng(w, Agency::PublicSecurity, i);
        let mut h = Rng::derive(w.seed, stream::HOUSEHOLD, p.household);
        let hh = format!("{:09}", 100_000_000 + p.household * 7 % 900_000_000);
        let (div, addr) = (division(&mut h), address(&mut h));
        let t = change_seconds(&mut r);
        let deceased = p.birth.0 < 1960 && r.ppm(20_000);
        let row = |r: &mut Rng, change: &str, t: i64, div: &str, addr: &str| {
            let mut row = Row::default();
            row.s("GMSFHM", format::id_spelling(&p.id, p.birth.0, true, r));
            row.s("XM", format::name_spelling(&p.name, false, r));
            row.s("XBDM", if p.male { "1" } else { "2" });
            row.v("MZDM", ethnicity(p.ethnicity, r));
            row.s("CSRQ", format::date(p.birth, r));
            row.s("HH", hh.clone());
            row.s("YHZGX", p.relation);
            row.s("HJDZ_XZQHDM", format::padded(div.to_owned(), r, 10_000));
            row.s("HJDZ_DZMC", addr);
            match r.below(20) {
                0 => row.v("SWBS", format::absent(r, true)),
                _ => row.s("SWBS", if deceased { "1" } else { "0" }),
            }
            row.s("BGLX", change);
            row.s("BGSJ", format::stamp(t, r));
            row
        };
        let change = if r.ppm(700_000) { "1" } else { "2" };
        let main = row(&mut r, change, t, div, &addr);
        sink.row(main, &mut r)?;
        if r.ppm(20_000) {
            // A re-sent older version (an earlier address), after the newer one.
            let (old_div, old_addr) = (division(&mut r), address(&mut r));
            let a1 = t - r.range(86_400, 200 * 86_400);
            let older = row(&mut r, "2", a1, old_div, &old_addr);
            sink.row(older, &mut r)?;
        }
        if r.ppm(2_000) {
            let a1 = t + r.range(3_600, 30 * 86_400);
            let cancel = row(&mut r, "3", a1, div, &addr);
            sink.row(cancel, &mut r)?;
        }
    }
    Ok(())
}

fn ethnicity(code: u8, r: &mut Rng) -> V {
    if r.ppm(20_000) {
        format::absent(r, true)
    } else if code < 10 && r.ppm(50_000) {
        V::S(code.to_string()) // `1`, read as `01`
    } else {
        V::S(format!("{code:02}"))
    }
}

// ─────────────────────────────────── hrss ───────────────────────────────────

const HRSS_HEADER: [&str; 11] = [
    "个人编号",
    "公民身份号码",
    "姓名",
    "单位统一社会信用代码",
    "单位名称",
    "险种类型",
    "缴费基数",
    "缴费年月",
    "缴费状态",
    "变更类型",
    "变更时间",
];

fn hrss<W: Write>(w: &World, sink: &mut Sink<W>) -> io::Result<()> {
    let mut header = Vec::new();
    format::write_csv(&mut header, &HRSS_HEADER, true, None);
    sink.header(&header)?;
    for i in 0..w.persons {
        let p = w.person(i);
        let Some(employer) = p.employer else { continue };
        let e = &w.enterprises[employer];
        let mut r = row_rng(w, Agency::Hrss, i);
        let base = if p.hardship {
            r.range(180_000, 260_000)
        } else {
            r.range(250_000, 2_500_000)
        };
        let grbh = format!("3402{:010}", p.index);
        let mut types = vec!["110", "310"];
        for (t, ppm) in [("210", 800_000), ("410", 900_000), ("510", 600_000)] {
            if r.ppm(ppm) {
                types.push(t);
            }
        }
        // Hardship: paying until the summer, then suspended; others: the latest month.
        let months: &[(&str, &str)] = if p.hardship {
            &[("202507", "1"), ("202508", "2"), ("202509", "2")]
        } else if r.ppm(10_000) {
            &[("202509", "2")]
        } else if r.ppm(5_000) {
            &[("202509", "3")]
        } else {
            &[("202509", "1")]
        };
        for &(month, status) in months {
            for &t in &types {
                let secs = format::local_seconds(2025, month[4..].parse().unwrap_or(9), 15)
                    + 20 * 86_400
                    + r.range(0, 10 * 86_400);
                let row = |r: &mut Rng, change: &str, secs: i64, base: i64| {
                    let mut row = Row::default();
                    row.s("GRBH", grbh.clone());
                    row.s("GMSFHM", format::id_spelling(&p.id, p.birth.0, true, r));
                    row.s("XM", format::name_spelling(&p.name, true, r));
                    row.s("TYSHXYDM", format::padded(e.code.clone(), r, 5_000));
                    row.s("DWMC", e.name.clone());
                    row.s("XZLX", t);
                    row.s("JFJS", format::money(base, r, true));
                    row.s("JFNY", month);
                    row.s("JFZT", status);
                    row.s("BGLX", change);
                    row.s("BGSJ", format::stamp(secs, r));
                    row
                };
                let a0 = if r.ppm(900_000) { "1" } else { "2" };
                let main = row(&mut r, a0, secs, base);
                sink.row(main, &mut r)?;
                if r.ppm(5_000) {
                    let a1 = secs - r.range(86_400, 9 * 86_400);
                    let older = row(&mut r, "2", a1, base - 10_000);
                    sink.row(older, &mut r)?;
                }
                if r.ppm(2_000) {
                    let a1 = secs + r.range(3_600, 86_400);
                    let cancel = row(&mut r, "3", a1, base);
                    sink.row(cancel, &mut r)?;
                }
            }
        }
    }
    Ok(())
}

// ───────────────────────────── market regulation ─────────────────────────────

const INDUSTRIES: &[&str] = &[
    "C3670", "C3982", "C2929", "C3311", "C3099", "C3484", "E4790", "F5211", "G5436", "H6210",
    "I6510", "K7010", "M7320", "O8010", "A0141", "S9010", "C17", "G543",
];
const ENTITY_TYPES: &[&str] = &[
    "有限责任公司",
    "有限责任公司(自然人投资或控股)",
    "股份有限公司",
    "个人独资企业",
    "有限合伙企业",
];

fn market_regulation<W: Write>(w: &World, sink: &mut Sink<W>) -> io::Result<()> {
    for (j, e) in w.enterprises.iter().enumerate() {
        let mut r = row_rng(w, Agency::MarketRegulation, j as u64);
        let rep = w.person(r.below(w.persons.max(1)));
        let established = (
            r.range(1992, 2024) as i32,
            r.range(1, 12) as u8,
            r.range(1, 28) as u8,
        );
        let employees = match r.below(10) {
            0..=5 => r.range(1, 50),
            6..=8 => r.range(50, 500),
            _ => r.range(500, 8_000),
        };
        let capital = r.range(1_000, 5_000_000); // fen of 万元
        let status = if e.active {
            "1"
        } else {
            *r.pick(&["2", "3", "4"])
        };
        let t = change_seconds(&mut r);
        let (div, addr) = (division(&mut r), address(&mut r));
        let industry = *r.pick(INDUSTRIES);
        let row = |r: &mut Rng, change: &str, t: i64, employees: i64| {
            let mut row = Row::default();
            row.s("TYSHXYDM", format::padded(e.code.clone(), r, 5_000));
            row.s("QYMC", e.name.clone());
            if r.ppm(50_000) {
                row.v("QYLX", format::absent(r, true));
            } else {
                row.s("QYLX", *r.pick(ENTITY_TYPES));
            }
            row.s("FDDBR", format::name_spelling(&rep.name, false, r));
            if r.ppm(50_000) {
                row.v("FDDBR_ZJHM", format::absent(r, true));
            } else {
                row.s(
                    "FDDBR_ZJHM",
                    format::id_spelling(&rep.id, rep.birth.0, false, r),
                );
            }
            row.s("DJZT", status);
            row.s("CLRQ", format::date(established, r));
            row.s("ZCZB", format::money(capital, r, false));
            row.s("HYDM", industry);
            row.n("CYRS", employees);
            row.s("ZS_XZQHDM", div);
            row.s("ZS", addr.clone());
            row.s("BGLX", change);
            row.s("BGSJ", format::stamp(t, r));
            row
        };
        let a0 = if r.ppm(600_000) { "1" } else { "2" };
        let main = row(&mut r, a0, t, employees);
        sink.row(main, &mut r)?;
        if r.ppm(30_000) {
            let a1 = t - r.range(86_400, 300 * 86_400);
            let older = row(&mut r, "2", a1, employees * 9 / 10);
            sink.row(older, &mut r)?;
        }
        if !e.active && r.ppm(300_000) {
            let a1 = t + r.range(86_400, 60 * 86_400);
            let cancel = row(&mut r, "3", a1, employees);
            sink.row(cancel, &mut r)?;
        }
    }
    Ok(())
}

// ───────────────────────────────────── tax ─────────────────────────────────────

const TAX_HEADER: [&str; 10] = [
    "TYSHXYDM", "NSRMC", "NSRZT", "SSND", "YYSR", "NSE", "NSXYDJ", "QSBZ", "BGLX", "BGSJ",
];

fn tax<W: Write>(w: &World, sink: &mut Sink<W>) -> io::Result<()> {
    let mut header = b"\xEF\xBB\xBF".to_vec();
    format::write_csv(&mut header, &TAX_HEADER, false, None);
    sink.header(&header)?;
    for (j, e) in w.enterprises.iter().enumerate() {
        let mut r = row_rng(w, Agency::Tax, j as u64);
        let years: &[i32] = if e.active { &[2023, 2024] } else { &[2023] };
        let scale = r.range(10, 100_000); // revenue in thousands of yuan
        for &year in years {
            let revenue = scale * r.range(80_000, 120_000);
            let paid = if r.ppm(30_000) {
                -r.range(1_000, 5_000_000)
            } else {
                revenue / 100 * r.range(1, 8)
            };
            let status = if !e.active {
                *r.pick(&["05", "07", "09"])
            } else if r.ppm(20_000) {
                "09"
            } else {
                "03"
            };
            let t = format::local_seconds(year + 1, 5, 31) + r.range(0, 120 * 86_400);
            let rating = *r.pick(&["A", "B", "B", "M", "C", "D"]);
            let arrears = if r.ppm(30_000) { "1" } else { "0" };
            let row = |r: &mut Rng, change: &str, t: i64, revenue: i64| {
                let mut row = Row::default();
                row.s("TYSHXYDM", e.code.clone());
                row.s("NSRMC", e.name.clone());
                row.s("NSRZT", status);
                row.s("SSND", year.to_string());
                row.s("YYSR", format::money(revenue, r, true));
                row.s("NSE", format::money(paid, r, true));
                row.s("NSXYDJ", rating);
                row.s("QSBZ", arrears);
                row.s("BGLX", change);
                row.s("BGSJ", format::stamp(t, r));
                row
            };
            let a0 = if r.ppm(800_000) { "1" } else { "2" };
            let main = row(&mut r, a0, t, revenue);
            sink.row(main, &mut r)?;
            if r.ppm(20_000) {
                let a1 = t - r.range(86_400, 60 * 86_400);
                let older = row(&mut r, "2", a1, revenue / 2);
                sink.row(older, &mut r)?;
            }
        }
    }
    Ok(())
}

// ─────────────────────────────────── housing ───────────────────────────────────

fn housing<W: Write>(w: &World, sink: &mut Sink<W>) -> io::Result<()> {
    let mut number = 0u64;
    for i in 0..w.persons {
        let p = w.person(i);
        let mut r = row_rng(w, Agency::Housing, i);
        // Everyone in hardship has applied; a few others too.
        if !(p.hardship || (p.birth.0 <= 2003 && r.ppm(8_000))) {
            continue;
        }
        number += 1;
        let applied_secs = format::local_seconds(2022, 1, 1) + r.range(0, 1_300 * 86_400);
        let year = format::date_of(applied_secs).0;
        let sqbh = format!("BZF{year}{number:07}");
        let size = r.range(1, 5);
        let per_head = if p.hardship {
            r.range(40_000, 90_000)
        } else {
            r.range(120_000, 400_000)
        };
        let income = per_head * size;
        let kind = *r.pick(&["1", "1", "2", "3", "3", "4"]);
        let status = if p.hardship {
            *r.pick(&["2", "3", "3"])
        } else {
            *r.pick(&["1", "4", "5", "5"])
        };
        let subsidy = (kind == "3" && status == "3").then(|| r.range(30_000, 90_000));
        let phone = if r.ppm(850_000) {
            format!("1{}{:09}", r.range(3, 9), r.below(1_000_000_000))
        } else {
            format!("0553-{}", r.range(2_000_000, 8_999_999))
        };
        let (div, addr) = (division(&mut r), address(&mut r));
        let t =
            (applied_secs + r.range(86_400, 200 * 86_400)).min(format::local_seconds(2025, 10, 30));
        let row = |r: &mut Rng, change: &str, t: i64, status: &str| {
            let mut row = Row::default();
            row.s("SQBH", sqbh.clone());
            row.s("SQRZJHM", format::id_spelling(&p.id, p.birth.0, false, r));
            row.s("SQRXM", format::name_spelling(&p.name, false, r));
            let phone = if r.ppm(10_000) {
                format::full_width(&phone)
            } else {
                phone.clone()
            };
            row.s("LXDH", phone);
            if r.ppm(500_000) {
                row.n("JTRKS", size);
            } else {
                row.s("JTRKS", size.to_string());
            }
            row.s("JTYSR", format::money(income, r, false));
            row.s("BZLX", kind);
            row.s("SHZT", status);
            match subsidy {
                Some(s) => row.s("ZJBZJE", format::money(s, r, false)),
                None => row.v("ZJBZJE", format::absent(r, true)),
            }
            row.s("FWDZ_XZQHDM", div);
            row.s("FWDZ", addr.clone());
            row.s("SQRQ", format::date(format::date_of(applied_secs), r));
            row.s("BGLX", change);
            row.s("BGSJ", format::stamp(t, r));
            row
        };
        let main = row(&mut r, "2", t, status);
        sink.row(main, &mut r)?;
        if r.ppm(100_000) {
            // The original application, re-sent after its later decision.
            let older = row(&mut r, "1", applied_secs + 3_600, "1");
            sink.row(older, &mut r)?;
        }
        if r.ppm(10_000) {
            let a1 = t + r.range(3_600, 86_400);
            let cancel = row(&mut r, "3", a1, status);
            sink.row(cancel, &mut r)?;
        }
    }
    Ok(())
}

// ───────────────────────────────── work safety ─────────────────────────────────

const JOBS: &[&str] = &[
    "焊工",
    "电工",
    "叉车司机",
    "冲压工",
    "搬运工",
    "装配工",
    "保洁员",
    "钳工",
    "起重工",
];
const DEPARTMENTS: &[&str] = &[
    "冲压车间",
    "涂装车间",
    "总装车间",
    "仓储部",
    "后勤部",
    "焊装车间",
    "机修班",
];
const EVENTS: &[&str] = &[
    "被物体打击",
    "手部被机械夹伤",
    "从高处坠落",
    "触电",
    "被叉车碰撞",
    "烫伤",
];

fn work_safety<W: Write>(w: &World, sink: &mut Sink<W>) -> io::Result<()> {
    // About one accident a year for every 250 insured workers.
    let accidents = (w.persons / 350).max(40);
    for k in 0..accidents {
        let mut r = row_rng(w, Agency::WorkSafety, k);
        // The first injured is a worker; the accident is at their employer.
        let mut first = None;
        for _ in 0..64 {
            let p = w.person(r.below(w.persons.max(1)));
            if p.employer.is_some() {
                first = Some(p);
                break;
            }
        }
        let Some(first) = first else { continue };
        let Some(employer) = first.employer else {
            continue;
        };
        let e = &w.enterprises[employer];
        let mut injured: Vec<Person> = vec![first];
        for _ in 0..[0, 0, 0, 1, 2][r.below(5) as usize] {
            injured.push(w.person(r.below(w.persons.max(1))));
        }
        let day = format::date_of(format::local_seconds(2024, 1, 1) + r.range(0, 640 * 86_400));
        let sgbh = format!("AJ{}{k:06}", day.0);
        let kind = format!(
            "{:02}",
            *r.pick(&[1, 1, 2, 3, 3, 3, 4, 5, 7, 9, 9, 15, 19, 20])
        );
        let t = format::local_seconds(day.0, day.1, day.2) + r.range(86_400, 40 * 86_400);
        for p in &injured {
            let job = *r.pick(JOBS);
            let dept = *r.pick(DEPARTMENTS);
            let severity = *r.pick(&["1", "1", "1", "1", "2", "2", "3"]);
            let description = description(p, job, dept, &mut r);
            let mut row = Row::default();
            row.s("SGBH", sgbh.clone());
            row.s("TYSHXYDM", e.code.clone());
            row.s(
                "SSRZJHM",
                format::id_spelling(&p.id, p.birth.0, false, &mut r),
            );
            row.s("SSRXM", format::name_spelling(&p.name, false, &mut r));
            row.s("GZ", job);
            row.s("SSBM", dept);
            row.s("SGRQ", format::date(day, &mut r));
            row.s("SGLX", kind.clone());
            row.s("SHCD", severity);
            row.s("SGMS", description);
            row.s("BGLX", if r.ppm(700_000) { "1" } else { "2" });
            row.s("BGSJ", format::stamp(t, &mut r));
            sink.row(row, &mut r)?;
        }
    }
    Ok(())
}

/// An inspector's description; about a third name the injured person and carry
/// their identity number or a phone number, as typed in practice, and some carry
/// other long numbers (equipment serials) that must survive scrubbing.
fn description(p: &Person, job: &str, dept: &str, r: &mut Rng) -> String {
    let event = *r.pick(EVENTS);
    match r.below(9) {
        0 => format!(
            "{dept}{job}{}作业时{event}，身份证号{}，已送医。",
            p.name, p.id
        ),
        1 => format!(
            "伤者{}（{}）{event}，家属电话1{}{:09}。",
            p.name,
            p.id,
            r.range(3, 9),
            r.below(1_000_000_000)
        ),
        2 => format!(
            "{}在{dept}{event}，联系电话0553-{}。",
            p.name,
            r.range(2_000_000, 8_999_999)
        ),
        3 => format!(
            "{dept}设备编号{:018}故障，{job}{event}，已送医。",
            r.below(1_000_000_000_000_000_000)
        ),
        _ => format!("{dept}{job}作业时{event}，已送医。"),
    }
}
