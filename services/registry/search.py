"""Organization search, pure: which terms index an organization, and how a query is answered from them.

Why not one document per organization with an indexed array of name bigrams: SecantusDB (like any
document store without a text index) answers such a query by reading every matching document, and on
these machines that costs about 70 µs a document, so a common two-character word among 100,000
organizations (a few thousand matches, all needed for `total`) takes a quarter of a second.

So the index is an inverted one, kept in few, compact documents ("runs", see store.SearchIndex):
a term maps organization ids to an entry `<code><version>[:<positions>|/<uscc>]`:
- `code`: three letters, status / type / risk, so filters are applied on the entries themselves;
- `version`: the organization's version (six digits), the newest entry of an organization wins;
- `positions`: where a two-character term occurs in the name, so a longer query is verified exactly
  (its bigrams must line up) without reading any name;
- `uscc`: the code, on the entries of `#all` and `#u...`, for USCC prefix searches.

Terms of an organization:
- `#all`: every organization (lists without `q`, and USCC prefixes of 9 to 13 characters);
- each character and each pair of adjacent characters of the normalised name (`domain.name_key`),
  except those lying entirely inside the region prefix every name starts with: they would index every
  organization under the same few terms; a query inside the prefix matches every name anyway;
- `#u` + the first 14 characters of its USCC once it has one: codes are issued in sequence, so this
  groups about a hundred organizations, and a prefix of 14 or more characters reads only its group.
  Prefixes of up to 8 characters are the fixed head (`5`, type digit, area code): answered by type.
An organization's terms never go away (names do not change, a USCC is never withdrawn), so indexing a
change only ever adds entries; resolution by version does the rest.

Lists without `q` (filters only) are answered from a second structure, the *list blocks*
(store.ListIndex): organizations in blocks of consecutive ids, each block with the entry of every one of
its organizations and its count per code. The total is the sum of the admitted codes' counts over the
blocks (a few hundred small documents at a million organizations), and the page is read from the one or
two blocks it lies in, so neither depends on how many organizations match.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from services.registry import identifiers

ALL = "#all"
USCC_TERM = "#u"
USCC_HEAD = 8  # 5, type digit, area code: the same for every organization of a type
USCC_GROUP = 14  # the head and six digits of the organization code: about a hundred codes issued in a row
VERSION_WIDTH = 6

STATUS_CODES = {"submitted": "s", "registered": "r", "rejected": "x", "deregistered": "d"}
TYPE_CODES = {"social_group": "g", "social_service_agency": "a", "foundation": "f"}
RISK_CODES = {"none": "n", "abnormal": "a", "serious": "s"}


def code_of(status: str, org_type: str, risk: str) -> str:
    return STATUS_CODES[status] + TYPE_CODES[org_type] + RISK_CODES[risk]


def entry(code: str, version: int, positions: list[int] | None = None, uscc: str | None = None) -> str:
    value = f"{code}{version:0{VERSION_WIDTH}d}"
    if positions:
        value += ":" + "".join(chr(48 + p) for p in positions)
    elif uscc:
        value += "/" + uscc
    return value


def entry_positions(value: str) -> set[int]:
    _, _, encoded = value.partition(":")
    return {ord(c) - 48 for c in encoded}


def entry_uscc(value: str) -> str:
    return value.partition("/")[2]


def newer(a: str, b: str) -> bool:
    """Whether entry `a` is of a later version than entry `b` (fixed-width versions compare as text)."""
    return a[3:3 + VERSION_WIDTH] > b[3:3 + VERSION_WIDTH]


# -- indexing ------------------------------------------------------------------------------------------
def name_terms(key: str, region_key: str) -> dict[str, list[int]]:
    """Characters and adjacent pairs of a normalised name, with the positions of the pairs, leaving out
    those lying entirely inside the region prefix."""
    start = len(region_key) if key.startswith(region_key) else 0
    terms: dict[str, list[int]] = {}
    for i, char in enumerate(key):
        if i >= start:
            terms.setdefault(char, [])
        if i + 1 < len(key) and i + 1 >= start:
            terms.setdefault(key[i:i + 2], []).append(i)
    return terms


def organization_entries(organization: dict, region_key: str) -> dict[str, str]:
    """term -> entry, for one version of an organization."""
    code = code_of(organization["status"], organization["type"], organization.get("risk", "none"))
    version, uscc = organization["version"], organization.get("uscc")
    plain = entry(code, version)
    entries = {ALL: entry(code, version, uscc=uscc)}
    for term, positions in name_terms(organization["name_key"], region_key).items():
        entries[term] = entry(code, version, positions) if len(term) == 2 else plain
    if uscc:
        entries[USCC_TERM + uscc[:USCC_GROUP]] = entry(code, version, uscc=uscc)
    return entries


def merge_entries(runs: list[dict[str, str]]) -> dict[str, str]:
    """One term's runs merged into organization id -> newest entry. Runs rarely share organizations, so
    the shared ids are found with a set operation and only those compared (this is most of a search's
    time)."""
    if not runs:
        return {}
    runs = sorted(runs, key=len, reverse=True)
    merged = dict(runs[0])
    for run in runs[1:]:
        shared = run.keys() & merged.keys()
        if shared:
            for org_id in shared:
                if merged[org_id][3:9] < run[org_id][3:9]:
                    merged[org_id] = run[org_id]
            merged.update({org_id: run[org_id] for org_id in run.keys() - shared})
        else:
            merged.update(run)
    return merged


# -- queries -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    statuses: tuple[str, ...] = ()  # empty: any
    types: tuple[str, ...] = ()
    risks: tuple[str, ...] = ()

    def codes(self) -> frozenset[str]:
        """Every entry code these filters admit."""
        statuses = [STATUS_CODES[s] for s in self.statuses] or STATUS_CODES.values()
        types = [TYPE_CODES[t] for t in self.types] or TYPE_CODES.values()
        risks = [RISK_CODES[r] for r in self.risks] or RISK_CODES.values()
        return frozenset(a + b + c for a, b, c in itertools.product(statuses, types, risks))

    def admit(self, organization: dict) -> bool:
        return ((not self.statuses or organization["status"] in self.statuses)
                and (not self.types or organization["type"] in self.types)
                and (not self.risks or organization.get("risk", "none") in self.risks))


@dataclass(frozen=True)
class Plan:
    """How to find the organizations whose name contains `key` or whose USCC starts with `uscc_prefix`."""

    key: str = ""
    every_name: bool = True  # no q, or q lies inside the region prefix every name starts with
    unigram: str | None = None
    bigrams: tuple[tuple[str, int], ...] = ()  # (pair, offset in q)
    narrowing: tuple[str, ...] = ()  # pairs every match must be indexed under
    uscc_prefix: str | None = None  # a USCC prefix longer than the head
    uscc_term: str = ALL  # where entries with USCCs of that prefix are
    uscc_types: tuple[str, ...] = ()  # a short USCC prefix: the types whose USCC head it matches
    region_key: str = ""

    @property
    def terms(self) -> list[str]:
        """The terms whose runs answer this plan."""
        terms = []
        if self.every_name or self.uscc_types:
            terms.append(ALL)
        if self.unigram:
            terms.append(self.unigram)
        terms += list(dict.fromkeys(pair for pair, _ in self.bigrams))
        if self.uscc_prefix and self.uscc_term not in terms:
            terms.append(self.uscc_term)
        return terms


def plan(q: str | None, *, region_key: str, area_code: str, name_key) -> Plan:
    key = name_key(q or "")
    if not key:
        return Plan(region_key=region_key)
    fields: dict = {"key": key, "region_key": region_key, "every_name": False}
    if key in region_key:
        fields["every_name"] = True
    elif len(key) == 1:
        fields["unigram"] = key
    else:
        bigrams = tuple((key[i:i + 2], i) for i in range(len(key) - 1))
        last = bigrams[-1][0]
        # The last pair of any match not lying inside the prefix is indexed; so is every pair that does
        # not occur in the prefix at all. Those narrow the candidates; every pair is checked in place.
        narrowing = {last} | {pair for pair, _ in bigrams if pair not in region_key}
        fields.update(bigrams=bigrams, narrowing=tuple(sorted(narrowing)))
    code = key.upper()
    if identifiers.uscc_shape_ok(code) and len(code) <= 18:
        if len(code) > USCC_HEAD:
            fields["uscc_prefix"] = code
            if len(code) >= USCC_GROUP:
                fields["uscc_term"] = USCC_TERM + code[:USCC_GROUP]
        else:
            fields["uscc_types"] = tuple(t for t, digit in identifiers.TYPE_DIGIT.items()
                                         if (identifiers.CIVIL_AFFAIRS + digit + area_code).startswith(code))
    return Plan(**fields)


@dataclass
class Answer:
    total: int
    ids: list[str] = field(default_factory=list)  # the page, newest first


def answer(plan_: Plan, runs_by_term: dict[str, list[dict[str, str]]], filters: Filters, *,
           skip: int, limit: int, read_now: dict[str, bool] | None = None) -> Answer:
    """Resolve the plan against the terms' runs: every match's newest entry, filtered, newest first.

    `read_now`: organizations read from their own documents just now, each with whether it matches today;
    that overrides what the index says of them, which may be a moment old."""
    admitted = filters.codes()
    merged = {term: merge_entries(runs_by_term.get(term, [])) for term in plan_.terms}
    sources: list[dict[str, str]] = []
    if plan_.every_name:
        sources.append(merged[ALL])
    elif plan_.unigram:
        sources.append(merged[plan_.unigram])
    elif plan_.bigrams:
        sources.append(_aligned(plan_, merged))
    if plan_.uscc_prefix:
        sources.append({org_id: value for org_id, value in merged.get(plan_.uscc_term, {}).items()
                        if entry_uscc(value).startswith(plan_.uscc_prefix)})
    if plan_.uscc_types:
        type_codes = {TYPE_CODES[t] for t in plan_.uscc_types}
        with_uscc = {STATUS_CODES["registered"], STATUS_CODES["deregistered"]}
        sources.append({org_id: value for org_id, value in merged[ALL].items()
                        if value[0] in with_uscc and value[1] in type_codes})
    matches = sources[0] if len(sources) == 1 else {k: v for source in sources for k, v in source.items()}
    if len(admitted) == len(Filters().codes()):
        selected = list(matches)
    else:
        selected = [org_id for org_id, value in matches.items() if value[:3] in admitted]
    if read_now:
        listed = set(selected)
        selected = [org_id for org_id in selected if read_now.get(org_id, True)]
        selected += [org_id for org_id, matches_now in read_now.items() if matches_now and org_id not in listed]
    # Ids sort by creation time: the page is the newest ones, found without sorting every match.
    page = heapq.nlargest(skip + limit, selected)[skip:]
    return Answer(total=len(selected), ids=page)


def _aligned(plan_: Plan, merged: dict[str, dict[str, str]]) -> dict[str, str]:
    """Organizations in which all of q's pairs occur in a row."""
    if len(plan_.bigrams) == 1:  # two characters: the pair's entries are the answer
        return merged.get(plan_.bigrams[0][0], {})
    narrowing = sorted(plan_.narrowing, key=lambda pair: len(merged.get(pair, {})))
    candidates = set(merged.get(narrowing[0], {}))
    for pair in narrowing[1:]:
        candidates &= merged.get(pair, {}).keys()
        if not candidates:
            return {}
    last_pair, last_offset = plan_.bigrams[-1]
    result = {}
    for org_id in candidates:
        for position in entry_positions(merged[last_pair][org_id]):
            start = position - last_offset
            if start >= 0 and all(_pair_at(plan_, merged, org_id, pair, start + offset)
                                  for pair, offset in plan_.bigrams):
                result[org_id] = merged[last_pair][org_id]
                break
    return result


def _pair_at(plan_: Plan, merged: dict[str, dict[str, str]], org_id: str, pair: str, position: int) -> bool:
    """Whether the name has `pair` at `position`: read off the region prefix when the pair lies inside it
    (every name starts with it, and such pairs are not indexed), else from the pair's positions."""
    if position + 2 <= len(plan_.region_key):
        return plan_.region_key[position:position + 2] == pair
    value = merged.get(pair, {}).get(org_id)
    return value is not None and position in entry_positions(value)


def name_matches(organization: dict, plan_: Plan) -> bool:
    """The same question answered from the organization itself (to drop entries the index has not caught
    up with yet)."""
    if not plan_.key or plan_.every_name:
        return True
    if plan_.key in organization["name_key"]:
        return True
    uscc = organization.get("uscc") or ""
    return bool(uscc) and uscc.startswith(plan_.key.upper())


# -- lists without q: blocks of consecutive ids with counts per code --------------------------------------------
def packed_counts(entries: dict[str, str]) -> str:
    """A block's count per code, as `code=n` separated by spaces (decoded faster than a subdocument)."""
    counts: dict[str, int] = {}
    for value in entries.values():
        counts[value[:3]] = counts.get(value[:3], 0) + 1
    return " ".join(f"{code}={n}" for code, n in sorted(counts.items()))


def admitted_count(packed: str, admitted: frozenset[str]) -> int:
    total = 0
    for item in packed.split():
        code, _, n = item.partition("=")
        if code in admitted:
            total += int(n)
    return total


def blocks_of_page(counts: list[tuple[str, str]], filters: Filters, *, skip: int,
                   limit: int) -> tuple[int, list[str], int]:
    """From every block's `(first id, packed counts)`: the total the filters admit, the blocks (newest
    first) the page lies in, and how many admitted entries of the first of them come before the page."""
    admitted = filters.codes()
    total, seen, needed, skip_in_first = 0, 0, [], 0
    for block, packed in sorted(counts, reverse=True):
        n = admitted_count(packed, admitted)
        total += n
        if n == 0 or seen + n <= skip or seen >= skip + limit:
            seen += n
            continue
        if not needed:
            skip_in_first = skip - seen
        needed.append(block)
        seen += n
    return total, needed, skip_in_first


def page_of_blocks(blocks: list[tuple[list[str], list[str]]], filters: Filters, *, skip_in_first: int,
                   limit: int) -> list[str]:
    """The page from its blocks (newest first, as `blocks_of_page` named them), each block as its ids in
    ascending order and their entries: ids newest first. Walks each block from its newest end, so a page
    costs what it skips and returns, not the size of the block."""
    admitted = filters.codes()
    ids: list[str] = []
    wanted = skip_in_first + limit
    for block_ids, values in blocks:
        for i in range(len(block_ids) - 1, -1, -1):
            if values[i][:3] in admitted:
                ids.append(block_ids[i])
                if len(ids) >= wanted:
                    return ids[skip_in_first:]
    return ids[skip_in_first:]
