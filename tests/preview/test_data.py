"""Bad sample data gives a clear error naming file:line and what is allowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from klaxon.preview.data import DataError, load_file


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.csv", "timestamp,host\n1780000000,a\n", r"missing.csv:1: header 'timestamp,host' is missing columns"),
        ("short.csv", "timestamp,host,value\n1780000000,1\n", r"short.csv:2: 2 columns, the header has 3"),
        (
            "unsorted.csv",
            "timestamp,value\n1780000060,1\n1780000000,2\n",
            r"unsorted.csv:3: unsorted timestamp 1780000000 \(2026-05-28T20:26:40Z\) in series \{\}"
            r".*strictly increasing.*previous was 1780000060",
        ),
        ("dup.csv", "timestamp,value\n1780000000,1\n1780000000,2\n", r"dup.csv:3: duplicate timestamp"),
        ("nan.csv", "timestamp,value\n1780000000,1\n1780000060,NaN\n", r"nan.csv:3: value 'NaN' is not finite"),
        ("text.csv", "timestamp,value\n1780000000,fast\n", r"text.csv:2: value 'fast' is not a number"),
        (
            "ms.csv",
            "timestamp,value\n1780000000000,1\n",
            r"ms.csv:2: timestamp '1780000000000' looks like milliseconds \(wrong units",
        ),
        ("naive.csv", "timestamp,value\n2026-06-24T10:00:00,1\n", r"naive.csv:2: .* has no time zone"),
        (
            "bad.csv",
            "timestamp,value\nyesterday,1\n",
            r"bad.csv:2: timestamp 'yesterday' is not a time \(allowed: RFC 3339",
        ),
        (
            "ms.json",
            '{"data":{"result":[{"metric":{},"values":[\n[1780000000,"1"],\n[1780000060000,"2"]\n]}]}}',
            r"ms.json:3: timestamp 1780000060000 looks like milliseconds",
        ),
        (
            "dup.json",
            '[{"labels":{"a":"b"},"samples":[\n[1780000000,1],\n[1780000060,2],\n[1780000060,3]]}]',
            r"dup.json:4: duplicate timestamp",
        ),
        ("shape.json", '{"result": []}', r"shape.json:1: unknown JSON shape \(allowed:"),
        ("broken.json", '[{"labels":\n}', r"broken.json:2: not JSON"),
        (
            "nan.om",
            '# TYPE m gauge\nm{a="b"} 1 1780000000\nm{a="b"} NaN 1780000060\n# EOF\n',
            r"nan.om:3: value 'NaN' is not finite",
        ),
        ("nots.om", "# TYPE m gauge\nm 1\n# EOF\n", r"nots.om:2: sample has no timestamp"),
        ("unsorted.om", "m 1 1780000060\nm 2 1780000000\n", r"unsorted.om:2: unsorted timestamp"),
        ("junk.om", "m{a=b} 1 1780000000\n", r"junk.om:1: bad label set"),
        ("data.xlsx", "x", r"unknown data format '.xlsx'"),
        ("empty.csv", "timestamp,value\n", r"empty.csv: no samples"),
    ],
)
def test_bad_data_names_the_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_file(write(tmp_path, name, text))


def test_formats_agree(tmp_path: Path) -> None:
    csv = write(tmp_path, "a.csv", "timestamp,__name__,host,value\n2026-06-24T00:00:00Z,m,a,1\n1782259260,m,a,2.5\n")
    js = write(
        tmp_path, "a.json", '[{"labels":{"__name__":"m","host":"a"},"samples":[[1782259200,1],[1782259260,2.5]]}]'
    )
    prom = write(
        tmp_path,
        "p.json",
        '{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"m","host":"a"},'
        '"values":[[1782259200,"1"],[1782259260.0,"2.5"]]}]}}',
    )
    om = write(
        tmp_path,
        "a.om",
        '# TYPE m gauge\n# HELP m help\nm{host="a"} 1 1782259200\nm{host="a"} 2.5 1782259260.000\n# EOF\n',
    )
    loaded = [load_file(p) for p in (csv, js, prom, om)]
    for series in loaded:
        assert len(series) == 1
        assert series[0].labels == {"__name__": "m", "host": "a"}
        np.testing.assert_array_equal(series[0].times, [1782259200.0, 1782259260.0])
        np.testing.assert_array_equal(series[0].values, [1.0, 2.5])


def test_openmetrics_label_escapes(tmp_path: Path) -> None:
    p = write(tmp_path, "e.om", 'm{a="x\\"y",b="c\\\\d",c="1,2"} 1 1780000000\n# EOF\n')
    assert load_file(p)[0].labels == {"__name__": "m", "a": 'x"y', "b": "c\\d", "c": "1,2"}
