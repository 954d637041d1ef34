//! Polars side of the report: the rows as a DataFrame (Parquet, CSV) and the aggregation over seeds.

use super::Agg;
use crate::store::Row;
use anyhow::{Context, Result};
use polars::prelude::*;
use std::path::{Path, PathBuf};

pub fn to_frame(rows: &[Row]) -> Result<DataFrame> {
    let s = |name: &str, f: &dyn Fn(&Row) -> String| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<String>>())
    };
    let cols = vec![
        s("cell", &|r| r.cell.clone()),
        s("experiment", &|r| r.experiment.clone()),
        s("dataset", &|r| r.dataset.clone()),
        s("model", &|r| r.model.clone()),
        s("family", &|r| r.family.clone()),
        s("method", &|r| r.method.clone()),
        s("label", &|r| r.label.clone()),
        Column::new(
            "alpha".into(),
            rows.iter().map(|r| r.alpha).collect::<Vec<Option<f64>>>(),
        ),
        s("mask", &|r| r.mask.clone()),
        Column::new(
            "seed".into(),
            rows.iter().map(|r| r.seed).collect::<Vec<u64>>(),
        ),
        s("set", &|r| r.set.clone()),
        s("metric", &|r| r.metric.clone()),
        Column::new(
            "value".into(),
            rows.iter().map(|r| r.value).collect::<Vec<f64>>(),
        ),
        Column::new(
            "ci_low".into(),
            rows.iter().map(|r| r.ci_low).collect::<Vec<Option<f64>>>(),
        ),
        Column::new(
            "ci_high".into(),
            rows.iter().map(|r| r.ci_high).collect::<Vec<Option<f64>>>(),
        ),
        Column::new("n".into(), rows.iter().map(|r| r.n).collect::<Vec<u64>>()),
        s("protocol", &|r| r.protocol.clone()),
    ];
    Ok(DataFrame::new(rows.len(), cols)?)
}

/// `runs.parquet` and `runs.csv`.
pub fn write_runs(rows: &[Row], out: &Path) -> Result<Vec<PathBuf>> {
    let mut df = to_frame(rows)?;
    let pq = out.join("runs.parquet");
    let csv = out.join("runs.csv");
    crate::util::write_atomic_with(&pq, |tmp| {
        let f =
            std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        ParquetWriter::new(f).finish(&mut df)?;
        Ok(())
    })?;
    crate::util::write_atomic_with(&csv, |tmp| {
        let f =
            std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        CsvWriter::new(f).finish(&mut df)?;
        Ok(())
    })?;
    Ok(vec![pq, csv])
}

/// Mean, sample std and count over seeds, grouped by everything but the seed.
pub fn aggregate(rows: &[Row]) -> Result<Vec<Agg>> {
    if rows.is_empty() {
        return Ok(vec![]);
    }
    let keys = [
        "dataset", "model", "mask", "alpha", "method", "label", "set", "metric",
    ];
    let df = to_frame(rows)?
        .lazy()
        .group_by(keys.iter().map(|k| col(*k)).collect::<Vec<_>>())
        .agg([
            col("value").mean().alias("mean"),
            col("value").std(1).alias("std"),
            col("value").count().alias("seeds"),
            col("n").first().alias("n"),
            col("protocol").first().alias("protocol"),
            // An interval only where every seed has one: the mean of each bound.
            col("ci_low").mean().alias("ci_low"),
            col("ci_high").mean().alias("ci_high"),
            col("ci_low").null_count().alias("ci_missing"),
        ])
        .sort(keys.to_vec(), SortMultipleOptions::default())
        .collect()?;
    let str_col = |name: &str| -> Result<Vec<String>> {
        Ok(df
            .column(name)?
            .str()?
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    };
    let f64_col =
        |name: &str| -> Result<Vec<Option<f64>>> { Ok(df.column(name)?.f64()?.iter().collect()) };
    let (dataset, model, mask, method, label, set, metric, protocol) = (
        str_col("dataset")?,
        str_col("model")?,
        str_col("mask")?,
        str_col("method")?,
        str_col("label")?,
        str_col("set")?,
        str_col("metric")?,
        str_col("protocol")?,
    );
    let (alpha, mean, std) = (f64_col("alpha")?, f64_col("mean")?, f64_col("std")?);
    let (ci_low, ci_high) = (f64_col("ci_low")?, f64_col("ci_high")?);
    let ci_missing: Vec<u64> = df
        .column("ci_missing")?
        .cast(&DataType::UInt64)?
        .u64()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    let seeds: Vec<u64> = df
        .column("seeds")?
        .cast(&DataType::UInt64)?
        .u64()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    let n: Vec<u64> = df
        .column("n")?
        .u64()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    Ok((0..df.height())
        .map(|i| Agg {
            dataset: dataset[i].clone(),
            model: model[i].clone(),
            mask: mask[i].clone(),
            alpha: alpha[i],
            method: method[i].clone(),
            label: label[i].clone(),
            set: set[i].clone(),
            metric: metric[i].clone(),
            mean: mean[i].unwrap_or(f64::NAN),
            std: if seeds[i] > 1 { std[i] } else { None },
            seeds: seeds[i] as usize,
            n: n[i],
            protocol: protocol[i].clone(),
            ci: match (ci_missing[i], ci_low[i], ci_high[i]) {
                (0, Some(lo), Some(hi)) => Some((lo, hi)),
                _ => None,
            },
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, seed: u64, set: &str, v: f64, alpha: Option<f64>) -> Row {
        Row {
            cell: format!("{method}{seed}"),
            experiment: "e".into(),
            dataset: "d".into(),
            model: "m".into(),
            family: "mae".into(),
            method: method.into(),
            label: method.into(),
            alpha,
            mask: "center:4".into(),
            seed,
            set: set.into(),
            metric: "fid".into(),
            value: v,
            n: 10,
            protocol: "p".into(),
            ci_low: None,
            ci_high: None,
        }
    }

    #[test]
    fn polars_aggregation_matches_the_plain_one() {
        let rows = vec![
            row("ours", 0, "forget", 2.0, Some(0.25)),
            row("ours", 1, "forget", 4.0, Some(0.25)),
            row("ours", 0, "retain", 1.0, Some(0.25)),
            row("original", 0, "forget", 1.5, None),
        ];
        let mut a = aggregate(&rows).unwrap();
        let mut b = super::super::aggregate_plain(&rows);
        let key = |x: &Agg| format!("{}{}{:?}", x.method, x.set, x.alpha);
        a.sort_by_key(key);
        b.sort_by_key(key);
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(key(x), key(y));
            assert!((x.mean - y.mean).abs() < 1e-12);
            assert_eq!(x.seeds, y.seeds);
            match (x.std, y.std) {
                (Some(p), Some(q)) => assert!((p - q).abs() < 1e-12),
                (None, None) => {}
                other => panic!("{other:?}"),
            }
        }
        let ours = a
            .iter()
            .find(|x| x.method == "ours" && x.set == "forget")
            .unwrap();
        assert!((ours.std.unwrap() - 2f64.sqrt()).abs() < 1e-12);
    }
}
