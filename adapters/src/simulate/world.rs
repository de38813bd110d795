//! The synthetic city behind the simulated exports: persons and enterprises.
//!
//! Every person and enterprise is derived on demand from `(seed, index)`, so each
//! agency's writer can walk the population in order, one entity at a time, and
//! the exports agree with each other (the same person has the same identity
//! number, name and employer in the household, social-insurance, housing and
//! injury exports) without the population ever being held in memory. Only the
//! enterprises' codes and names are tabled (≈14,000 short entries at Wuhu scale),
//! because every social-insurance row names its employer.

use super::rng::Rng;
use crate::rules;

/// Stream ids for [`Rng::derive`]: one per kind of entity or export.
pub(crate) mod stream {
    pub const PERSON: u64 = 1;
    pub const HOUSEHOLD: u64 = 2;
    pub const ENTERPRISE: u64 = 3;
    pub const ROW: u64 = 100;
}

/// How big a city to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A few thousand rows in all: for tests and quick demos.
    Small,
    /// The reference scale: Wuhu, ≈14,000 enterprises and ≈420,000 persons.
    Wuhu,
}

impl Scale {
    pub fn from_id(id: &str) -> Option<Scale> {
        match id {
            "small" => Some(Scale::Small),
            "wuhu" => Some(Scale::Wuhu),
            _ => None,
        }
    }

    pub const fn id(self) -> &'static str {
        match self {
            Scale::Small => "small",
            Scale::Wuhu => "wuhu",
        }
    }

    /// (enterprises, persons, persons in hardship)
    pub(crate) const fn sizes(self) -> (u64, u64, u64) {
        match self {
            Scale::Small => (60, 2_000, 60),
            Scale::Wuhu => (14_000, 420_000, 10_000),
        }
    }
}

/// The simulated city: sizes and the seed every entity is derived from.
pub(crate) struct World {
    pub seed: u64,
    pub persons: u64,
    pub hardship: u64,
    pub enterprises: Vec<Enterprise>,
}

#[derive(Debug, Clone)]
pub(crate) struct Enterprise {
    pub code: String,
    pub name: String,
    pub active: bool,
}

pub(crate) struct Person {
    pub index: u64,
    /// The 18-digit identity number.
    pub id: String,
    pub birth: (i32, u8, u8),
    pub male: bool,
    pub name: String,
    /// GB/T 3304 ethnicity, 1–56.
    pub ethnicity: u8,
    pub hardship: bool,
    /// Index of the employer in [`World::enterprises`].
    pub employer: Option<usize>,
    pub household: u64,
    /// Relation to the head of household (`YHZGX`).
    pub relation: &'static str,
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "汤", "方", "潘", "莫", "熊", "黎", "付", "欧阳", "司马",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "文", "国", "海", "红", "兰", "建", "春", "晓",
    "玉", "志", "鹏", "辉", "婷", "雪", "琳", "浩", "宇", "欣", "佳", "子", "梓", "涵", "晨", "阳",
];
/// Minority names with an interpunct; the writers vary the interpunct's spelling.
const MINORITY: &[(&str, u8)] = &[
    ("阿依古丽·买买提", 5),
    ("买买提·艾力", 5),
    ("扎西·次仁", 4),
    ("热依拉·吐尔逊", 5),
    ("阿卜杜·热合曼", 5),
];
/// Areas of first registration: current and retired Wuhu codes, Anhui, elsewhere.
const AREAS: &[&str] = &[
    "340202", "340207", "340209", "340210", "340212", "340223", "340281", "340202", "340207",
    "340221", "340225", "340208", "340203", "340102", "340302", "341802", "342501", "320102",
    "330106", "110105", "420106", "360102", "510107",
];
const TRADE_NAMES: &[&str] = &[
    "伯特利",
    "三只松鼠",
    "奇瑞",
    "海螺",
    "长信",
    "埃斯顿",
    "鸠兹",
    "江城",
    "镜湖",
    "赭山",
    "神山",
    "繁昌",
    "南陵",
    "无为",
    "长江",
    "青弋",
    "天门",
    "大江",
    "皖南",
    "芜港",
    "新芜",
    "白马",
    "华强",
    "融汇",
];
const TRADES: &[&str] = &[
    "汽车零部件",
    "新材料",
    "电子科技",
    "机械制造",
    "食品",
    "物流",
    "建筑工程",
    "纺织",
    "精密铸造",
    "智能装备",
    "商贸",
    "餐饮管理",
    "物业服务",
    "化工",
];
const FORMS: &[&str] = &["有限公司", "股份有限公司", "有限责任公司"];
pub(crate) const STREETS: &[&str] = &[
    "长江中路",
    "中山北路",
    "赭山东路",
    "花津南路",
    "文化路",
    "九华中路",
    "银湖北路",
    "北京西路",
    "黄山东路",
    "弋江中路",
    "利民路",
    "峨山路",
    "万春东路",
    "芜屯路",
];

/// The check digit of a GB 32100 organisation code: letters allowed in a credit
/// code only (no I, O, S, V, Z).
const ORG_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

impl World {
    pub fn new(seed: u64, scale: Scale) -> World {
        let (enterprises, persons, hardship) = scale.sizes();
        let enterprises = (0..enterprises).map(|j| enterprise(seed, j)).collect();
        World {
            seed,
            persons,
            hardship,
            enterprises,
        }
    }

    pub fn person(&self, i: u64) -> Person {
        let mut r = Rng::derive(self.seed, stream::PERSON, i);
        let year = r.range(1952, 2006) as i32;
        let month = r.range(1, 12) as u8;
        let day = r.range(1, i64::from(days_in_month(year, month))) as u8;
        let male = r.ppm(510_000);
        let area = *r.pick(AREAS);
        let mut seq = r.range(0, 499) as u16 * 2;
        if male {
            seq += 1;
        }
        let first17 = format!("{area}{year:04}{month:02}{day:02}{seq:03}");
        let check = rules::id_check_char(first17.as_bytes()).unwrap_or(b'0');
        let id = format!("{first17}{}", check as char);
        let (name, ethnicity) = if r.ppm(15_000) {
            let (n, e) = r.pick(MINORITY);
            ((*n).to_owned(), *e)
        } else {
            let mut n = String::from(*r.pick(SURNAMES));
            let given: &&str = r.pick(GIVEN);
            n.push_str(given);
            if r.ppm(600_000) {
                let given: &&str = r.pick(GIVEN);
                n.push_str(given);
            }
            let e = if r.ppm(980_000) {
                1
            } else {
                r.range(2, 56) as u8
            };
            (n, e)
        };
        // Hardship (working age, born 1965–2003: 39 of the 55 birth years) is
        // drawn so that about `hardship` of `persons` are in it.
        let hardship =
            (1965..=2003).contains(&year) && r.below(self.persons * 39) < self.hardship * 55;
        let age = 2025 - year;
        let working_age = (18..=60).contains(&age);
        let employed = working_age && (hardship || r.ppm(720_000));
        let employer = (employed && !self.enterprises.is_empty())
            .then(|| r.below(self.enterprises.len() as u64) as usize);
        let household = i / 3;
        let relation = ["01", "02", "10"][(i % 3) as usize];
        Person {
            index: i,
            id,
            birth: (year, month, day),
            male,
            name,
            ethnicity,
            hardship,
            employer,
            household,
            relation,
        }
    }
}

fn enterprise(seed: u64, j: u64) -> Enterprise {
    let mut r = Rng::derive(seed, stream::ENTERPRISE, j);
    let area = rules::WUHU_DIVISIONS[r.below(8) as usize].0;
    let entity_type = *r.pick(b"123") as char;
    let mut code = format!("9{entity_type}{area}");
    let mut org = Vec::with_capacity(9);
    for k in 0..8 {
        // Mostly digits, as real organisation codes; now and then a letter.
        let c = if k < 2 && r.ppm(300_000) {
            ORG_CHARS[10 + r.below(21) as usize]
        } else {
            b'0' + r.below(10) as u8
        };
        org.push(c);
    }
    org.push(rules::org_code_check_char(&org).unwrap_or(b'0'));
    code.push_str(std::str::from_utf8(&org).unwrap_or("000000000"));
    let check = rules::uscc_check_char(code.as_bytes()).unwrap_or(b'0');
    code.push(check as char);
    let name = format!(
        "芜湖{}{}{}",
        r.pick(TRADE_NAMES),
        r.pick(TRADES),
        r.pick(FORMS)
    );
    Enterprise {
        code,
        name,
        active: r.ppm(930_000),
    }
}

pub(crate) fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}
