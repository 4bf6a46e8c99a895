"""Valid request bodies to start tests from."""

from __future__ import annotations

import itertools

_names = itertools.count(1)
CHINESE_DIGITS = "零一二三四五六七八九"


def unique_suffix() -> str:
    """A distinct Chinese word per call, so names stay unique without Latin digits."""
    return "".join(CHINESE_DIGITS[int(d)] for d in str(next(_names)))


def application(**overrides) -> dict:
    body = {
        "name": f"上海市浦东新区{unique_suffix()}社区养老服务中心",
        "type": "social_service_agency",
        "domain": "养老服务",
        "address": "上海市浦东新区世纪大道100号",
        "legal_representative": {"name": "张三", "id_number": "11010519491231002X"},
        "contact": {"phone": "13800138000", "email": "contact@example.cn"},
        "registered_funds_fen": 10_000_000,
        "council": [{"name": "张三", "role": "chair"}, {"name": "李四", "role": "member"},
                    {"name": "王五", "role": "member"}],
        "term_years": 5,
    }
    body.update(overrides)
    return body


def council(size: int = 3) -> list[dict]:
    """A council of `size` people with exactly one chair."""
    return [{"name": f"理事{unique_suffix()}", "role": "chair" if i == 0 else "member"} for i in range(size)]


def social_group_application(**overrides) -> dict:
    """A valid application of a 社会团体 (members and funds at their minimums)."""
    return application(**{"name": f"上海市浦东新区{unique_suffix()}集邮协会", "type": "social_group",
                          "domain": "文化", "registered_funds_fen": 3_000_000,
                          "members": {"individuals": 50, "units": 0}, **overrides})


def foundation_application(**overrides) -> dict:
    """A valid application of a 基金会 (council of five, funds at the minimum)."""
    return application(**{"name": f"上海市浦东新区{unique_suffix()}慈善基金会", "type": "foundation",
                          "domain": "慈善", "registered_funds_fen": 200_000_000, "council": council(5),
                          **overrides})
