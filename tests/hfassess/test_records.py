"""Validation at the boundary: conversions, ranges, units, CKD-EPI, the leak guard."""
import pytest

from papersuite.errors import UserError

from hfassess.records import (LeakageError, assert_no_leak, ckd_epi_2021, load_data, load_uci_csv,
                              range_warnings, validate)

UCI_HEADER = ("age,anaemia,creatinine_phosphokinase,diabetes,ejection_fraction,high_blood_pressure,"
              "platelets,serum_creatinine,serum_sodium,sex,smoking,time,DEATH_EVENT")
GOOD_ROW = "75,0,582,0,20,1,265000,1.9,130,1,0,4,1"


@pytest.mark.parametrize("field,value,needle", [
    ("ejection_fraction", 120, "ejection_fraction=120 is outside 5-90 %"),
    ("age", -5, "age=-5 is outside 18-110 years"),
    ("serum_creatinine", 110, 'for umol/L write {"value": 110, "unit": "umol/L"}'),
    ("ejection_fraction", 0.35, '"unit": "fraction"'),
])
def test_out_of_range_names_field_value_where_and_unit(field, value, needle):
    with pytest.raises(UserError) as e:
        validate({field: value}, "cases.jsonl:7")
    msg = str(e.value)
    assert msg.startswith("cases.jsonl:7: ") and needle in msg


def test_unknown_unit_is_an_error():
    with pytest.raises(UserError, match=r"cases.jsonl:2: serum_creatinine: unknown unit 'mmol/dL'"):
        validate({"serum_creatinine": {"value": 1, "unit": "mmol/dL"}}, "cases.jsonl:2")


def test_conversions_to_canonical_units():
    r = validate({"serum_creatinine": {"value": 88.4, "unit": "umol/L"},
                  "ejection_fraction": {"value": 0.35, "unit": "fraction"},
                  "sbp": {"value": 16, "unit": "kPa"}, "weight_kg": {"value": 200, "unit": "lb"},
                  "platelets": {"value": 250, "unit": "10^9/L"}, "potassium": {"value": 4.1, "unit": "mmol/L"},
                  "anaemia": True, "sex": "0"}, "x:1")
    i = r.inputs
    assert i["serum_creatinine"] == pytest.approx(1.0)
    assert i["ejection_fraction"] == pytest.approx(35.0)
    assert i["sbp"] == pytest.approx(120.01, abs=0.01)
    assert i["weight_kg"] == pytest.approx(90.718, abs=0.001)
    assert i["platelets"] == 250000 and i["potassium"] == 4.1 and i["anaemia"] == 1 and i["sex"] == 0


@pytest.mark.parametrize("scr,age,male,expected", [(1.0, 60, False, 64), (1.0, 60, True, 86)])
def test_ckd_epi_2021_published_values(scr, age, male, expected):
    # NKF CKD-EPI 2021 calculator values (race-free equation, Inker et al. NEJM 2021)
    assert round(ckd_epi_2021(scr, age, male)) == expected


def test_egfr_derived_and_listed_nothing_imputed():
    r = validate({"serum_creatinine": 1.0, "age": 60, "sex": 1}, "x:1")
    assert r.inputs["egfr"] == pytest.approx(86.2, abs=0.1) and "CKD-EPI" in r.derived[0]
    r2 = validate({"age": 60}, "x:1")
    assert "egfr" not in r2.inputs and "serum_creatinine" not in r2.inputs


def test_training_range_warning():
    r = validate({"age": 104}, "x:1")
    range_warnings(r, {"age": [40, 95]})
    assert "outside the training data's range 40-95" in r.warnings[0]


def test_csv_errors_name_file_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(UCI_HEADER + "\n" + GOOD_ROW + "\n" + GOOD_ROW.replace(",20,", ",120,") + "\n")
    with pytest.raises(UserError, match=r"bad.csv:3: ejection_fraction=120"):
        load_uci_csv(p)
    p.write_text(UCI_HEADER.replace(",time", "") + "\n" + "75,0,582,0,20,1,265000,1.9,130,1,0,1\n")
    with pytest.raises(UserError, match=r"bad.csv:1: missing column\(s\) time"):
        load_uci_csv(p)


def test_leak_guard_and_uci_loader():
    ds = load_data("uci-hf")
    assert ds.X.shape == (299, 11) and ds.y.sum() == 96 and "time" not in ds.features
    assert ds.duration.min() == 4 and ds.duration.max() == 285
    with pytest.raises(LeakageError):
        assert_no_leak(["age", "time"])
