//! Every word the console shows, in Simplified Chinese (the default) and
//! English. Labels are the fields of one struct with a value per language,
//! so a label missing in either language does not compile; sentences with
//! numbers in them are methods with both forms side by side.

/// The page language, from the `console_lang` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn from_cookie(value: Option<&str>) -> Lang {
        match value {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub fn labels(self) -> &'static Labels {
        match self {
            Lang::Zh => &ZH,
            Lang::En => &EN,
        }
    }
}

/// The labels of one language.
pub struct Labels {
    pub lang: Lang,
    /// The `lang` attribute of the page.
    pub html_lang: &'static str,
    /// The other language: its code and its name in itself.
    pub other_code: &'static str,
    pub other_name: &'static str,
    pub language: &'static str,
    pub app: &'static str,
    pub skip_to_content: &'static str,
    pub nav_label: &'static str,
    pub nav_overview: &'static str,
    pub nav_search: &'static str,
    pub nav_report: &'static str,
    pub nav_checkpoints: &'static str,
    pub connected_as: &'static str,
    pub gateway: &'static str,
    pub footer_privacy: &'static str,
    pub error_heading: &'static str,
    pub back_to_overview: &'static str,

    pub verified: &'static str,
    pub failed: &'static str,
    pub not_checked: &'static str,
    pub first_use: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub none: &'static str,
    pub any: &'static str,

    // Overview.
    pub overview_title: &'static str,
    pub log_verification: &'static str,
    pub latest_checkpoint: &'static str,
    pub origin: &'static str,
    pub tree_size: &'static str,
    pub root_hash: &'static str,
    pub pinned_key: &'static str,
    pub signature: &'static str,
    pub signature_ok: &'static str,
    pub consistency: &'static str,
    pub whole_log: &'static str,
    pub subject_chains: &'static str,
    pub warnings: &'static str,
    pub no_warnings: &'static str,
    pub verify_now: &'static str,
    pub last_verified: &'static str,
    pub chart_title: &'static str,
    pub chart_table_summary: &'static str,
    pub date: &'static str,
    pub total: &'static str,
    pub deliveries_title: &'static str,
    pub consumer: &'static str,
    pub purpose: &'static str,
    pub pull_pages: &'static str,
    pub records: &'static str,
    pub lookups: &'static str,
    pub reidentifications: &'static str,
    pub refusals_title: &'static str,
    pub denied_calls: &'static str,
    pub refused_connections: &'static str,
    pub caller: &'static str,
    pub call: &'static str,
    pub code: &'static str,
    pub count: &'static str,
    pub peer: &'static str,
    pub reason: &'static str,
    pub other_actions: &'static str,

    // Search.
    pub search_title: &'static str,
    pub filters: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub actor: &'static str,
    pub action: &'static str,
    pub outcome: &'static str,
    pub kind: &'static str,
    pub subject_token: &'static str,
    pub page_size: &'static str,
    pub search_button: &'static str,
    pub clear_filters: &'static str,
    pub by_person: &'static str,
    pub id_number: &'static str,
    pub id_hint: &'static str,
    pub search_person_button: &'static str,
    pub results: &'static str,
    pub no_results: &'static str,
    pub seq: &'static str,
    pub time: &'static str,
    pub kinds: &'static str,
    pub details: &'static str,
    pub persons: &'static str,
    pub next_page: &'static str,
    pub first_page: &'static str,
    pub download_csv: &'static str,
    pub person_search_note: &'static str,
    pub flagged_by_scan: &'static str,
    pub bad_time: &'static str,
    pub bad_subject: &'static str,
    pub id_required: &'static str,
    pub expired: &'static str,

    // Entry.
    pub entry_title: &'static str,
    pub decoded_fields: &'static str,
    pub leaf_hash: &'static str,
    pub inclusion_proof: &'static str,
    pub signed_leaf: &'static str,
    pub previous_entry: &'static str,
    pub first_entry_of_person: &'static str,
    pub all_entries_of_person: &'static str,
    pub pseudonym: &'static str,
    pub canonical_bytes: &'static str,

    // Report.
    pub report_title: &'static str,
    pub report_intro: &'static str,
    pub make_report: &'static str,
    pub subject_access_answer: &'static str,
    pub id_masked: &'static str,
    pub made_at: &'static str,
    pub made_by: &'static str,
    pub checkpoint: &'static str,
    pub chain: &'static str,
    pub chain_complete: &'static str,
    pub chain_broken: &'static str,
    pub problems: &'static str,
    pub disclosures: &'static str,
    pub auditor_reads: &'static str,
    pub who: &'static str,
    pub when: &'static str,
    pub case_number: &'static str,
    pub fields_forms: &'static str,
    pub print_hint: &'static str,
    pub new_report: &'static str,

    // Checkpoints.
    pub checkpoints_title: &'static str,
    pub checkpoints_intro: &'static str,
    pub first_seen: &'static str,
    pub consistency_with_previous: &'static str,
    pub trust_on_first_use: &'static str,
    pub recorded_failures: &'static str,
    pub current_checkpoint: &'static str,
}

pub static ZH: Labels = Labels {
    lang: Lang::Zh,
    html_lang: "zh-CN",
    other_code: "en",
    other_name: "English",
    language: "语言",
    app: "合规控制台",
    skip_to_content: "跳到正文",
    nav_label: "主导航",
    nav_overview: "总览",
    nav_search: "检索",
    nav_report: "个人报告",
    nav_checkpoints: "检查点",
    connected_as: "身份",
    gateway: "网关",
    footer_privacy: "页面不缓存；身份证号只经 POST 表单提交，不出现在地址栏、历史记录或日志中。",
    error_heading: "出错了",
    back_to_overview: "返回总览",

    verified: "已验证",
    failed: "验证失败",
    not_checked: "未检查",
    first_use: "首次见到",
    yes: "是",
    no: "否",
    none: "无",
    any: "全部",

    overview_title: "总览",
    log_verification: "审计日志验证",
    latest_checkpoint: "最新签名检查点",
    origin: "日志来源",
    tree_size: "条目数",
    root_hash: "根哈希",
    pinned_key: "固定公钥",
    signature: "签名",
    signature_ok: "已用固定公钥验证",
    consistency: "一致性",
    whole_log: "全部条目",
    subject_chains: "个人链",
    warnings: "警告",
    no_warnings: "无警告",
    verify_now: "立即重新验证",
    last_verified: "上次验证",
    chart_title: "每日条目数（按操作，近 14 天）",
    chart_table_summary: "图表数据",
    date: "日期",
    total: "合计",
    deliveries_title: "按使用方与用途统计的交付（近 30 天）",
    consumer: "使用方",
    purpose: "用途",
    pull_pages: "拉取页数",
    records: "记录数",
    lookups: "个人查询",
    reidentifications: "重新识别",
    refusals_title: "近 7 天的拒绝",
    denied_calls: "被拒绝的调用",
    refused_connections: "被拒绝的连接",
    caller: "调用方",
    call: "调用",
    code: "代码",
    count: "次数",
    peer: "对端地址",
    reason: "原因",
    other_actions: "其他",

    search_title: "检索审计日志",
    filters: "筛选条件",
    from: "起始时间（含）",
    to: "截止时间（不含）",
    actor: "操作者",
    action: "操作",
    outcome: "结果",
    kind: "数据类别",
    subject_token: "个人（审计假名）",
    page_size: "每页条数",
    search_button: "检索",
    clear_filters: "清除条件",
    by_person: "按个人检索（身份证号）",
    id_number: "身份证号",
    id_hint: "仅经 POST 提交，不出现在地址栏、历史记录或日志中。网关会把本次查阅记入此人的审计链。",
    search_person_button: "检索此人",
    results: "检索结果",
    no_results: "没有匹配的条目。",
    seq: "序号",
    time: "时间",
    kinds: "数据类别",
    details: "详情",
    persons: "涉及人员",
    next_page: "下一页",
    first_page: "第一页",
    download_csv: "下载 CSV",
    person_search_note: "按个人检索的结果（身份证号未保留在页面地址中）",
    flagged_by_scan: "上次全量验证发现此条目有问题",
    bad_time: "时间的格式应为 年-月-日 时:分，例如 2026-01-31 08:00",
    bad_subject: "审计假名是 32 位十六进制字符",
    id_required: "请输入身份证号",
    expired: "这份结果已过期或属于另一个会话：请重新输入身份证号。",

    entry_title: "审计条目",
    decoded_fields: "解码字段",
    leaf_hash: "叶哈希",
    inclusion_proof: "包含证明",
    signed_leaf: "签名树中的叶",
    previous_entry: "此人的上一条目",
    first_entry_of_person: "无（此人的第一条）",
    all_entries_of_person: "此人的全部条目",
    pseudonym: "审计假名",
    canonical_bytes: "规范编码",

    report_title: "个人报告：谁看过此人的数据",
    report_intro: "输入身份证号，列出与此人有关的每一次交付、查询和重新识别：谁、何时、用途、案件编号，以及每个字段离开网关时的形式。网关会记录本次报告。",
    make_report: "生成报告",
    subject_access_answer: "个人信息查阅答复（《个人信息保护法》第四十五条）",
    id_masked: "身份证号（部分隐去）",
    made_at: "生成时间",
    made_by: "生成人",
    checkpoint: "签名检查点",
    chain: "审计链",
    chain_complete: "完整",
    chain_broken: "不完整",
    problems: "问题",
    disclosures: "交付、查询与重新识别",
    auditor_reads: "审计人员的查阅",
    who: "谁",
    when: "时间",
    case_number: "案件编号",
    fields_forms: "字段（离开网关时的形式）",
    print_hint: "打印：使用浏览器的打印功能（Ctrl+P），打印版只包含报告本身。",
    new_report: "另一人的报告",

    checkpoints_title: "签名检查点历史",
    checkpoints_intro: "本控制台见过的检查点（保存在本地状态文件中），最新的在前。每个检查点的签名都用固定公钥重新验证，相邻两个之间的一致性证明也在打开本页时重新验证。",
    first_seen: "首次见到",
    consistency_with_previous: "与前一个的一致性",
    trust_on_first_use: "首个见到的检查点（信任起点）",
    recorded_failures: "记录的失败",
    current_checkpoint: "当前检查点",
};

pub static EN: Labels = Labels {
    lang: Lang::En,
    html_lang: "en",
    other_code: "zh",
    other_name: "中文",
    language: "Language",
    app: "Compliance console",
    skip_to_content: "Skip to content",
    nav_label: "Main",
    nav_overview: "Overview",
    nav_search: "Search",
    nav_report: "Person report",
    nav_checkpoints: "Checkpoints",
    connected_as: "Identity",
    gateway: "Gateway",
    footer_privacy: "Pages are not cached; identity numbers are sent only through POST forms, never in the address bar, history or logs.",
    error_heading: "Something went wrong",
    back_to_overview: "Back to the overview",

    verified: "Verified",
    failed: "Failed",
    not_checked: "Not checked",
    first_use: "First seen",
    yes: "yes",
    no: "no",
    none: "none",
    any: "Any",

    overview_title: "Overview",
    log_verification: "Audit log verification",
    latest_checkpoint: "Latest signed checkpoint",
    origin: "Origin",
    tree_size: "Size (entries)",
    root_hash: "Root hash",
    pinned_key: "Pinned key",
    signature: "Signature",
    signature_ok: "checked with the pinned key",
    consistency: "Consistency",
    whole_log: "Every entry",
    subject_chains: "Subject chains",
    warnings: "Warnings",
    no_warnings: "No warnings",
    verify_now: "Verify now",
    last_verified: "Last verified",
    chart_title: "Entries per day by action (last 14 days)",
    chart_table_summary: "Chart data",
    date: "Date",
    total: "Total",
    deliveries_title: "Deliveries by consumer and purpose (last 30 days)",
    consumer: "Consumer",
    purpose: "Purpose",
    pull_pages: "Pull pages",
    records: "Records",
    lookups: "Look-ups",
    reidentifications: "Re-identifications",
    refusals_title: "Refusals in the last 7 days",
    denied_calls: "Denied calls",
    refused_connections: "Refused connections",
    caller: "Caller",
    call: "Call",
    code: "Code",
    count: "Count",
    peer: "Peer",
    reason: "Reason",
    other_actions: "other",

    search_title: "Search the audit log",
    filters: "Filters",
    from: "From (inclusive)",
    to: "To (exclusive)",
    actor: "Actor",
    action: "Action",
    outcome: "Outcome",
    kind: "Record kind",
    subject_token: "Person (auditors' pseudonym)",
    page_size: "Per page",
    search_button: "Search",
    clear_filters: "Clear",
    by_person: "By person (identity number)",
    id_number: "Identity number",
    id_hint: "Sent by POST only: never in the address bar, history or logs. The gateway records this read in the person's audit trail.",
    search_person_button: "Search this person",
    results: "Results",
    no_results: "No entries match.",
    seq: "Seq",
    time: "Time",
    kinds: "Kinds",
    details: "Details",
    persons: "Persons",
    next_page: "Next page",
    first_page: "First page",
    download_csv: "Download CSV",
    person_search_note: "Results for one person (the identity number is kept out of the address)",
    flagged_by_scan: "the last full verification found a problem with this entry",
    bad_time: "Times take the form YYYY-MM-DD HH:MM, e.g. 2026-01-31 08:00",
    bad_subject: "An auditors' pseudonym is 32 hexadecimal characters",
    id_required: "Enter an identity number",
    expired: "These results have expired or belong to another session: enter the identity number again.",

    entry_title: "Audit entry",
    decoded_fields: "Decoded fields",
    leaf_hash: "Leaf hash",
    inclusion_proof: "Inclusion proof",
    signed_leaf: "Leaf in the signed tree",
    previous_entry: "Person's previous entry",
    first_entry_of_person: "none (the person's first entry)",
    all_entries_of_person: "All entries about this person",
    pseudonym: "Auditors' pseudonym",
    canonical_bytes: "Canonical encoding",

    report_title: "Person report: who saw this person's data",
    report_intro: "Enter an identity number to list every delivery, look-up and re-identification that concerned the person: who, when, for what purpose and case, and the form each field left the gateway in. The gateway records this report.",
    make_report: "Make the report",
    subject_access_answer: "Answer to a subject access request (PIPL art. 45)",
    id_masked: "Identity number (masked)",
    made_at: "Made at",
    made_by: "Made by",
    checkpoint: "Signed checkpoint",
    chain: "Audit chain",
    chain_complete: "complete",
    chain_broken: "incomplete",
    problems: "Problems",
    disclosures: "Deliveries, look-ups and re-identifications",
    auditor_reads: "Auditors' reads",
    who: "Who",
    when: "When",
    case_number: "Case",
    fields_forms: "Fields (form they left in)",
    print_hint: "To print, use the browser's Print (Ctrl+P): the printout holds the report only.",
    new_report: "Report on another person",

    checkpoints_title: "Signed checkpoint history",
    checkpoints_intro: "The checkpoints this console has seen (kept in its local state file), newest first. Each signature is checked again with the pinned key, and the consistency proof between each two neighbours is verified again when this page opens.",
    first_seen: "First seen",
    consistency_with_previous: "Consistency with the previous one",
    trust_on_first_use: "the first checkpoint seen (trust on first use)",
    recorded_failures: "Recorded failures",
    current_checkpoint: "Current checkpoint",
};

impl Labels {
    fn pick(&self, zh: &'static str, en: &'static str) -> &'static str {
        match self.lang {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }

    /// An audit action's name (the action code itself when unknown).
    pub fn action(&self, action: &str) -> String {
        let (zh, en) = match action {
            "batch_pushed" => ("批次推送", "Batch pushed"),
            "records_delivered" => ("记录交付", "Records delivered"),
            "person_looked_up" => ("个人查询", "Person looked up"),
            "person_reidentified" => ("重新识别", "Person re-identified"),
            "denied" => ("调用被拒", "Call denied"),
            "connection_refused" => ("连接被拒", "Connection refused"),
            "gateway_started" => ("网关启动", "Gateway started"),
            "policy_recorded" => ("策略记录", "Policy recorded"),
            "policies_reloaded" => ("策略重载", "Policies reloaded"),
            "policy_reload_refused" => ("策略重载被拒", "Policy reload refused"),
            "key_rotated" => ("密钥轮换", "Key rotated"),
            "records_reindex_started" => ("重建索引开始", "Re-index started"),
            "records_reindexed" => ("重建索引完成", "Records re-indexed"),
            "consumer_repseudonymised" => ("使用方更换假名", "Consumer re-pseudonymised"),
            "subject_report" => ("个人报告", "Subject report"),
            "audit_queried" => ("审计查询", "Audit queried"),
            "audit_exported" => ("审计导出", "Audit exported"),
            "note_read" => ("备注读取", "Note read"),
            "note_erased" => ("备注删除", "Note erased"),
            "undecodable" => ("无法解码", "Undecodable"),
            other => return other.to_string(),
        };
        self.pick(zh, en).to_string()
    }

    pub fn outcome(&self, outcome: &str) -> String {
        let (zh, en) = match outcome {
            "ok" => ("成功", "OK"),
            "denied" => ("拒绝", "Denied"),
            "rejected" => ("驳回", "Rejected"),
            other => return other.to_string(),
        };
        self.pick(zh, en).to_string()
    }

    /// A record kind's name.
    pub fn kind(&self, kind: &str) -> String {
        let (zh, en) = match kind {
            "household" => ("户籍", "Household"),
            "social_insurance" => ("社保缴费", "Social insurance"),
            "enterprise" => ("企业登记", "Enterprise"),
            "taxpayer" => ("纳税", "Taxpayer"),
            "housing_assistance" => ("住房保障", "Housing assistance"),
            "work_injury" => ("工伤", "Work injury"),
            other => return other.to_string(),
        };
        self.pick(zh, en).to_string()
    }

    /// The form a field left the gateway in.
    pub fn form(&self, form: &str) -> String {
        let (zh, en) = match form {
            "kept" => ("原样", "kept"),
            "masked" => ("掩码", "masked"),
            "pseudonymised" => ("假名化", "pseudonymised"),
            "generalised" => ("泛化", "generalised"),
            "constant" => ("常量", "constant"),
            "encrypted" => ("加密", "encrypted"),
            "scrubbed" => ("清除", "scrubbed"),
            other => return other.to_string(),
        };
        self.pick(zh, en).to_string()
    }

    pub fn entry_heading(&self, seq: u64) -> String {
        match self.lang {
            Lang::Zh => format!("审计条目 {seq}"),
            Lang::En => format!("Audit entry {seq}"),
        }
    }

    pub fn shown(&self, n: usize) -> String {
        match self.lang {
            Lang::Zh => format!("本页 {n} 条"),
            Lang::En => format!("{n} entries on this page"),
        }
    }

    pub fn ago(&self, secs: i64) -> String {
        match self.lang {
            Lang::Zh => format!("{secs} 秒前"),
            Lang::En => format!("{secs} s ago"),
        }
    }

    pub fn times_note(&self, offset: &str) -> String {
        match self.lang {
            Lang::Zh => format!("时间均为 UTC{offset}"),
            Lang::En => format!("Times in UTC{offset}"),
        }
    }

    pub fn persons_in_entry(&self, n: usize) -> String {
        match self.lang {
            Lang::Zh => format!("{n} 人"),
            Lang::En => format!("{n}"),
        }
    }

    pub fn msg(&self, m: &Msg) -> String {
        use Lang::*;
        match (m, self.lang) {
            (Msg::SignatureOk, Zh) => "已用固定公钥验证".into(),
            (Msg::SignatureOk, En) => "checked with the pinned key".into(),
            (Msg::NotChecked, Zh) => "未检查".into(),
            (Msg::NotChecked, En) => "not checked".into(),
            (Msg::SignatureFailed(e), Zh) => format!("签名不能用固定公钥验证：{e}"),
            (Msg::SignatureFailed(e), En) => {
                format!("the signature does not verify with the pinned key: {e}")
            }
            (Msg::KeyDiffers, Zh) => "网关发来的公钥与固定公钥不同（以固定公钥为准）".into(),
            (Msg::KeyDiffers, En) => {
                "the gateway presents a different key than the pinned one (the pinned key is used)"
                    .into()
            }
            (Msg::FirstCheckpoint { size }, Zh) => {
                format!("本控制台第一次见到检查点（{size} 条），以它为信任起点")
            }
            (Msg::FirstCheckpoint { size }, En) => format!(
                "the first checkpoint this console has seen ({size} entries): trusted on first use"
            ),
            (Msg::ConsistentFrom { from, to }, Zh) => {
                format!("已证明与本控制台上次见到的检查点一致（{from} → {to} 条）")
            }
            (Msg::ConsistentFrom { from, to }, En) => format!(
                "proved consistent with the last checkpoint this console saw ({from} → {to} entries)"
            ),
            (Msg::ProvedConsistent { from, to }, Zh) => {
                format!("一致性证明已验证（{from} → {to} 条）")
            }
            (Msg::ProvedConsistent { from, to }, En) => {
                format!("consistency proof verified ({from} → {to} entries)")
            }
            (Msg::Unchanged { size }, Zh) => {
                format!("与本控制台上次见到的检查点相同（{size} 条）")
            }
            (Msg::Unchanged { size }, En) => {
                format!("the same as the last checkpoint this console saw ({size} entries)")
            }
            (Msg::Older { size, latest }, Zh) => format!(
                "比本控制台见过的检查点（{latest} 条）旧（{size} 条），已证明两者一致"
            ),
            (Msg::Older { size, latest }, En) => format!(
                "older ({size} entries) than one this console has seen ({latest}); proved consistent with it"
            ),
            (Msg::ConsistencyFailed { from, to, why }, Zh) => format!(
                "一致性证明失败（{from} → {to} 条）：{why}。日志可能被改写。"
            ),
            (Msg::ConsistencyFailed { from, to, why }, En) => format!(
                "the consistency proof failed ({from} → {to} entries): {why}. The log may have been rewritten."
            ),
            (Msg::Gateway(e), Zh) => format!("无法从网关取得：{e}"),
            (Msg::Gateway(e), En) => format!("could not get it from the gateway: {e}"),
            (Msg::LogVerified { size }, Zh) => format!(
                "{size} 条条目已按其字节重新哈希，重算的树根与签名检查点一致"
            ),
            (Msg::LogVerified { size }, En) => format!(
                "{size} entries re-hashed from their bytes: the recomputed root matches the signed checkpoint"
            ),
            (Msg::Altered { seq }, Zh) => format!(
                "条目 {seq} 被篡改：其字节的哈希与签名树中的叶不符"
            ),
            (Msg::Altered { seq }, En) => format!(
                "entry {seq} was altered: its bytes do not hash to the leaf in the signed tree"
            ),
            (Msg::RootMismatch, Zh) => "重算的树根与签名检查点不符".into(),
            (Msg::RootMismatch, En) => {
                "the root recomputed from the entries does not match the signed checkpoint".into()
            }
            (Msg::Missing { seq, more }, Zh) => {
                format!("条目 {seq} 在存储中缺失（另有 {more} 条缺失）")
            }
            (Msg::Missing { seq, more }, En) => {
                format!("entry {seq} is missing from the store ({more} more missing)")
            }
            (Msg::OutOfOrder { seq, after }, Zh) => {
                format!("条目 {seq} 出现在条目 {after} 之后：顺序被打乱或重复")
            }
            (Msg::OutOfOrder { seq, after }, En) => {
                format!("entry {seq} comes after entry {after}: reordered or duplicated")
            }
            (Msg::Undecodable { seq }, Zh) => format!("条目 {seq} 无法解码"),
            (Msg::Undecodable { seq }, En) => format!("entry {seq} cannot be decoded"),
            (Msg::ProofFailed { seq, why }, Zh) => {
                format!("条目 {seq} 的包含证明不能推出签名根哈希：{why}")
            }
            (Msg::ProofFailed { seq, why }, En) => {
                format!("the inclusion proof of entry {seq} does not lead to the signed root: {why}")
            }
            (Msg::ChainsComplete { persons }, Zh) => {
                format!("{persons} 人的审计链均完整（每条都指向此人的上一条）")
            }
            (Msg::ChainsComplete { persons }, En) => format!(
                "the chains of {persons} persons are complete (each entry points to the person's previous one)"
            ),
            (
                Msg::ChainBroken {
                    seq,
                    points_to,
                    found,
                },
                Zh,
            ) => format!(
                "个人链断裂：条目 {seq} 指向 {points_to}，但此人的上一条是 {found}"
            ),
            (
                Msg::ChainBroken {
                    seq,
                    points_to,
                    found,
                },
                En,
            ) => format!(
                "broken subject chain: entry {seq} points back to {points_to}, but the person's previous entry is {found}"
            ),
            (Msg::MoreProblems { n }, Zh) => format!("另有 {n} 个问题"),
            (Msg::MoreProblems { n }, En) => format!("{n} more problems"),
            (Msg::Stale { entries, minutes }, Zh) => format!(
                "检查点过期：有 {entries} 条超过 {minutes} 分钟的条目不在签名检查点内"
            ),
            (Msg::Stale { entries, minutes }, En) => format!(
                "stale checkpoint: {entries} entries older than {minutes} minutes are not covered by a signed checkpoint"
            ),
            (Msg::StaleNoCheckpoint { minutes }, Zh) => format!(
                "检查点过期：网关超过 {minutes} 分钟未提供新的签名检查点"
            ),
            (Msg::StaleNoCheckpoint { minutes }, En) => format!(
                "stale checkpoint: the gateway has not given a signed checkpoint for more than {minutes} minutes"
            ),
            (Msg::Included { size }, Zh) => {
                format!("此条目的字节包含在签名检查点（{size} 条）中")
            }
            (Msg::Included { size }, En) => format!(
                "this entry's bytes are included in the signed checkpoint ({size} entries)"
            ),
            (Msg::EntryGone, Zh) => "存储中已没有此条目的字节".into(),
            (Msg::EntryGone, En) => "the store no longer holds this entry's bytes".into(),
            (Msg::BytesDiffer, Zh) => {
                "条目字节的哈希与签名树中此位置的叶不同：条目已被修改".into()
            }
            (Msg::BytesDiffer, En) => {
                "the entry's bytes do not hash to the leaf the signed tree holds at its position: the entry was altered".into()
            }
            (Msg::NotThePerson, Zh) => "条目没有按报告所示指向此人".into(),
            (Msg::NotThePerson, En) => {
                "the entry does not name the person with the back-pointer the report shows".into()
            }
            (Msg::ChainComplete { entries }, Zh) => format!(
                "完整：此人的 {entries} 条条目首尾相接，每条都包含在签名检查点中"
            ),
            (Msg::ChainComplete { entries }, En) => format!(
                "complete: the person's {entries} entries point back one to the other, each included in the signed checkpoint"
            ),
            (Msg::ChainIncomplete, Zh) => "不完整或未能验证：见下列问题".into(),
            (Msg::ChainIncomplete, En) => {
                "incomplete or not verified: see the problems below".into()
            }
            (Msg::StateFile(e), Zh) => format!("无法写入本地状态文件：{e}"),
            (Msg::StateFile(e), En) => format!("cannot write the local state file: {e}"),
        }
    }
}

/// A sentence about verification, rendered in the page's language (and kept
/// in the state file when it records a failure).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Msg {
    SignatureOk,
    NotChecked,
    SignatureFailed(String),
    KeyDiffers,
    FirstCheckpoint {
        size: u64,
    },
    ConsistentFrom {
        from: u64,
        to: u64,
    },
    /// Between two remembered checkpoints (the history).
    ProvedConsistent {
        from: u64,
        to: u64,
    },
    Unchanged {
        size: u64,
    },
    Older {
        size: u64,
        latest: u64,
    },
    ConsistencyFailed {
        from: u64,
        to: u64,
        why: String,
    },
    Gateway(String),
    LogVerified {
        size: u64,
    },
    Altered {
        seq: u64,
    },
    RootMismatch,
    Missing {
        seq: u64,
        more: u64,
    },
    OutOfOrder {
        seq: u64,
        after: u64,
    },
    Undecodable {
        seq: u64,
    },
    ProofFailed {
        seq: u64,
        why: String,
    },
    ChainsComplete {
        persons: u64,
    },
    ChainBroken {
        seq: u64,
        points_to: u64,
        found: u64,
    },
    MoreProblems {
        n: u64,
    },
    Stale {
        entries: u64,
        minutes: u64,
    },
    StaleNoCheckpoint {
        minutes: u64,
    },
    Included {
        size: u64,
    },
    EntryGone,
    BytesDiffer,
    NotThePerson,
    StateFile(String),
    ChainComplete {
        entries: u64,
    },
    ChainIncomplete,
}
