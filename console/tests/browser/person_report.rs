//! The person report in the browser says what `gateway audit report --json`
//! says for the same person: the same entries, who, action, purpose, case
//! and each field with its form; the chain complete, each line verified.

use crate::support::*;
use fantoccini::Locator;
use gateway::proto::SubjectReportRequest;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_person_report_matches_the_cli_report() -> Res {
    let Some(env) = Env::start("the_person_report_matches_the_cli_report").await else {
        return Ok(());
    };
    env.goto("/report").await?;
    env.type_into("#r-id", PERSON).await?;
    env.click("#report-button").await?;
    env.find("#report").await?;
    assert_eq!(env.attr("#chain-verdict", "data-state").await?, "verified");
    assert_eq!(env.text("#id-masked").await?, "340***********1133");
    assert!(!env.b().source().await?.contains(PERSON));

    // Every line as the page shows it: seq, who, action, purpose, case, fields.
    type Line = (
        u64,
        String,
        String,
        String,
        String,
        BTreeMap<String, String>,
    );
    let mut shown: Vec<Line> = Vec::new();
    for tr in env
        .b()
        .find_all(Locator::Css("#report table.report-table tbody tr"))
        .await?
    {
        let cells = tr.find_all(Locator::Css("td")).await?;
        let mut fields = BTreeMap::new();
        for li in tr.find_all(Locator::Css("li[data-field]")).await? {
            fields.insert(
                li.attr("data-field").await?.unwrap_or_default(),
                li.attr("data-form").await?.unwrap_or_default(),
            );
        }
        let mark = tr.find(Locator::Css(".mark")).await?;
        assert_eq!(mark.attr("data-state").await?.as_deref(), Some("verified"));
        shown.push((
            tr.attr("data-seq").await?.unwrap_or_default().parse()?,
            cells[2].text().await?,
            tr.attr("data-action").await?.unwrap_or_default(),
            cells[4].text().await?,
            cells[5].text().await?,
            fields,
        ));
    }
    shown.sort_by_key(|l| l.0);
    env.screenshot("report").await?;
    // The printed answer: the report alone, without the console's frame.
    env.emulate_media("print").await?;
    assert!(!env.find("#report-form").await?.is_displayed().await?);
    assert!(!env.find("#nav-overview").await?.is_displayed().await?);
    assert!(env.find("#report").await?.is_displayed().await?);
    env.screenshot("report-print").await?;
    env.emulate_media("").await?;

    // The command line's report, made after: the same lines, plus the
    // console's own report (audited) at the end.
    let report = env
        .auditor()
        .await
        .subject_report(SubjectReportRequest {
            id_number: PERSON.into(),
        })
        .await?
        .into_inner();
    let json = gateway::audit::report::json(&report);
    assert_eq!(json["chain_complete"], true);
    let items = json["items"].as_array().unwrap();
    let last = items.last().unwrap();
    assert_eq!(last["action"], "subject_report");
    assert_eq!(last["who"], "auditor/compliance");
    let expected: Vec<Line> = items[..items.len() - 1]
        .iter()
        .map(|i| {
            (
                i["seq"].as_u64().unwrap(),
                i["who"].as_str().unwrap().to_string(),
                i["action"].as_str().unwrap().to_string(),
                i["purpose"].as_str().unwrap().to_string(),
                i["case_number"].as_str().unwrap().to_string(),
                serde_json::from_value(i["fields"].clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(shown, expected);
    // One delivery and the two look-ups, fields with their forms.
    let actions: Vec<&str> = shown.iter().map(|l| l.2.as_str()).collect();
    assert_eq!(
        actions,
        ["records_delivered", "person_looked_up", "person_looked_up"]
    );
    assert_eq!(shown[0].5["social_insurance.name"], "masked");
    assert_eq!(shown[1].4, "KN-2026-0001");
    env.stop().await;
    Ok(())
}
