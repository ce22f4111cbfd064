import pytest

from rolecall.roles import Role, derive_role, fits, size_band


@pytest.mark.parametrize("group, section, index_name, expected", [
    ("Ladieswear", "Womens Tailoring", "Ladieswear", ("women", "adult")),
    ("Divided", "Divided Collection", "Divided", ("women", "adult")),
    ("Menswear", "Men Underwear", "Menswear", ("men", "adult")),
    ("Sport", "Ladies H&M Sport", "Sport", ("women", "adult")),
    ("Sport", "Men H&M Sport", "Sport", ("men", "adult")),
    ("Sport", "Kids Sports", "Sport", ("unisex", "child")),
    ("Baby/Children", "Baby Girl", "Baby Sizes 50-98", ("girls", "baby")),
    ("Baby/Children", "Kids Boy", "Children Sizes 92-140",
     ("boys", "child")),
    ("Baby/Children", "Young Girl", "Children Sizes 134-170",
     ("girls", "teen")),
    ("Baby/Children", "Kids Outerwear", "Children Sizes 92-140",
     ("unisex", "child")),
    (None, None, None, (None, None)),
])
def test_derive_role_from_hm_attributes(group, section, index_name,
                                        expected):
    role = derive_role(group, section, index_name)
    assert (role.gender, role.age_group) == expected


def test_size_band_comes_from_kids_index_names_only():
    assert size_band("Baby Sizes 50-98") == "50-98"
    assert size_band("Children Sizes 134-170") == "134-170"
    assert size_band("Ladieswear") is None
    assert derive_role("Baby/Children", "Kids Girl",
                       "Children Sizes 92-140").size == "92-140"


def test_unknown_role_is_not_decisive():
    assert not Role().known
    assert Role("men", "adult").known
    assert Role("men", "adult").key == "men/adult"


def test_fits_respects_age_and_gender_but_not_unisex():
    women = Role("women", "adult")
    assert fits(women, "women", "adult")
    assert not fits(women, "men", "adult")
    assert not fits(women, "girls", "child")
    assert fits(women, "unisex", "adult")
    assert fits(women, None, None)
    assert fits(Role("unisex", "child"), "boys", "child")


def test_filters_name_roles():
    from rolecall.roles import role_from_filters
    assert role_from_filters({"gender": "men", "size": "L"}) == Role(
        "men", "adult")
    assert role_from_filters({"gender": "girls"}).age_group == "child"
    assert role_from_filters({"age_group": "baby"}) == Role("unisex",
                                                           "baby")
    assert role_from_filters({"size": "M"}) is None


def test_switches_refinements_and_event_order():
    from rolecall.roles import active_first, next_role
    women, men = Role("women", "adult"), Role("men", "adult")
    assert next_role(None, women) == (women, False)
    assert next_role(women, men) == (men, True)
    assert next_role(women, Role("unisex", "adult")) == (women, False)
    kid = Role("unisex", "child", "122")
    assert next_role(kid, Role("girls", "child")) == (
        Role("girls", "child", "122"), False)
    roles = ["women/adult", None, "men/adult", "women/adult"]
    assert active_first(roles, "men/adult") == [0, 3, 1, 2]
    assert active_first(roles, "women/adult") == [2, 0, 1, 3]
