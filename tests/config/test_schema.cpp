// config/schema.h on a test-only tree: nested sections three deep, list and optional
// fields, the markdown reference, and the edit-distance suggestions (config/suggest.h).
#include <gtest/gtest.h>

#include <optional>

#include "common/error.h"
#include "config/load.h"
#include "config/print.h"
#include "config/suggest.h"

namespace qtrain::config {

enum class Flavour { plain, salted };
QTRAIN_ENUM_NAMES(Flavour, {Flavour::plain, "plain"}, {Flavour::salted, "salted"});

namespace {

// An enum field and an optional string whose null is spelled none (as model.teacher).
struct Kitchen {
  Flavour flavour = Flavour::plain;
  std::optional<std::string> guest = std::string("ann");
  template <class V>
  void visit(V& v) {
    v.field("flavour", flavour, "How it tastes");
    v.field("guest", guest, "Who comes; none = nobody", NoneIsNull{});
  }
};

struct House {
  Kitchen kitchen;
  template <class V>
  void visit(V& v) {
    v.section("kitchen", kitchen, "Kitchen");
  }
};

struct Inner {
  std::vector<std::int64_t> layers = {0, 1};
  std::optional<std::int64_t> group_size;
  template <class V>
  void visit(V& v) {
    v.field("layers", layers, "Layer indices", at_least(0));
    v.field("group_size", group_size, "Group size; null = per channel", Range{1, 4096});
  }
};

struct Middle {
  std::vector<std::string> targets = {"q_proj"};
  std::optional<std::string> note;
  Inner inner;
  template <class V>
  void visit(V& v) {
    v.field("targets", targets, "Linear layers", Choices{"q_proj", "k_proj", "v_proj"});
    v.field("note", note, "Free text");
    v.section("inner", inner, "Innermost");
  }
};

struct Root {
  Middle middle;
  template <class V>
  void visit(V& v) {
    v.section("middle", middle, "Middle");
  }
};

struct Tree {
  Root root;
  template <class V>
  void visit(V& v) {
    v.section("root", root, "Root");
  }
};

TEST(ConfigSchema, NestedSectionsListsAndOptionals) {
  Tree tree;
  Schema schema = bind(tree);
  Sources sources;
  read_yaml(
      "root:\n  middle:\n    targets: [k_proj, v_proj]\n    note: hello\n    inner:\n      layers:\n"
      "        - 3\n        - 5\n      group_size: 128\n",
      "tree.yaml", schema, sources);
  EXPECT_EQ(tree.root.middle.targets, (std::vector<std::string>{"k_proj", "v_proj"}));
  EXPECT_EQ(tree.root.middle.note, std::optional<std::string>("hello"));
  EXPECT_EQ(tree.root.middle.inner.layers, (std::vector<std::int64_t>{3, 5}));
  EXPECT_EQ(tree.root.middle.inner.group_size, std::optional<std::int64_t>(128));
  EXPECT_EQ(sources.at("root.middle.inner.group_size").describe(), "tree.yaml:9");

  apply_override("root.middle.inner.group_size=null", schema, sources);
  apply_override("root.middle.inner.layers=[7]", schema, sources);
  EXPECT_FALSE(tree.root.middle.inner.group_size.has_value());
  EXPECT_EQ(tree.root.middle.inner.layers, (std::vector<std::int64_t>{7}));

  EXPECT_EQ(to_yaml(schema),
            "# Root\nroot:\n  middle:\n    targets: [k_proj, v_proj]\n    note: hello\n    inner:\n"
            "      layers: [7]\n      group_size: null\n");
}

TEST(ConfigSchema, ListItemErrorsNameTheItemAndItsLine) {
  Tree tree;
  Schema schema = bind(tree);
  Sources sources;
  try {
    read_yaml("root:\n  middle:\n    inner:\n      layers:\n        - 1\n        - -2\n", "tree.yaml", schema, sources);
    FAIL() << "expected qtrain::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.key_name(), "root.middle.inner.layers[1]");
    EXPECT_EQ(e.line_number(), 6);
    EXPECT_EQ(e.expected_value(), ">= 0");
  }
  try {
    apply_override("root.middle.targets=[q_proj, o_proj]", schema, sources);
    FAIL() << "expected qtrain::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.file_name(), "--set");
    EXPECT_EQ(e.key_name(), "root.middle.targets[1]");
    EXPECT_EQ(e.expected_value(), "one of q_proj, k_proj, v_proj");
  }
}

TEST(ConfigSchema, EnumFieldsReadTheirNamesAndNoneIsNull) {
  Kitchen kitchen;
  Schema schema = bind(kitchen);
  Sources sources;
  read_yaml("flavour: salted\nguest: none\n", "kitchen.yaml", schema, sources);
  EXPECT_EQ(kitchen.flavour, Flavour::salted);
  EXPECT_FALSE(kitchen.guest.has_value());
  EXPECT_EQ(to_yaml(schema), "flavour: salted\nguest: none\n");
  apply_override("guest=bob", schema, sources);
  EXPECT_EQ(kitchen.guest, std::optional<std::string>("bob"));
  EXPECT_THROW(read_yaml("guest:\n", "kitchen.yaml", schema, sources), Error);  // empty: missing, not none
  read_yaml("guest: \"none\"\n", "kitchen.yaml", schema, sources);  // quoted: the string
  EXPECT_EQ(kitchen.guest, std::optional<std::string>("none"));
  EXPECT_EQ(to_yaml(schema), "flavour: salted\nguest: \"none\"\n");  // and so it reads back
  try {
    apply_override("flavour=sweet", schema, sources);
    FAIL() << "expected qtrain::Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.key_name(), "flavour");
    EXPECT_EQ(e.expected_value(), "one of plain, salted");
  }
  EXPECT_EQ(kitchen.flavour, Flavour::salted);
  House defaults;
  EXPECT_EQ(reference_markdown(bind(defaults)),
            "### `kitchen`\n\nKitchen.\n\n"
            "| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n"
            "| `kitchen.flavour` | string | `plain` | `plain`, `salted` | How it tastes |\n"
            "| `kitchen.guest` | string or none | `ann` |  | Who comes; none = nobody |\n\n");
  EXPECT_EQ(parse_choice<Flavour>("plain", "--flavour"), Flavour::plain);
  EXPECT_THROW(parse_choice<Flavour>("sweet", "--flavour"), Error);
}

TEST(ConfigSchema, ReferenceListsTypesDefaultsAndConstraints) {
  Tree tree;
  EXPECT_EQ(reference_markdown(bind(tree)),
            "### `root`\n\nRoot.\n\n"
            "### `root.middle`\n\nMiddle.\n\n"
            "| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n"
            "| `root.middle.targets` | list of strings | `[q_proj]` | `q_proj`, `k_proj`, `v_proj` | Linear layers |\n"
            "| `root.middle.note` | string or null | `null` |  | Free text |\n\n"
            "### `root.middle.inner`\n\nInnermost.\n\n"
            "| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n"
            "| `root.middle.inner.layers` | list of integers | `[0, 1]` | >= 0 | Layer indices |\n"
            "| `root.middle.inner.group_size` | integer or null | `null` | in [1, 4096] | Group size; null = per "
            "channel |\n\n");
}

TEST(ConfigSchema, JobConfigDefaultsSatisfyTheirOwnRules) {
  // Printing the defaults and reading them back checks every default against its range
  // and choices; validate() then checks the cross-field rules.
  JobConfig defaults;
  const std::string yaml = to_yaml(bind(defaults));
  EXPECT_NO_THROW(load_config_text(yaml, "defaults.yaml", {"model.teacher=t", "data.train=x.h5"}));
}

TEST(ConfigSchema, FormattedStringsReadBackUnchanged) {
  for (std::string name : {"1234", "true", "null", "", "a b: c # d", "say \"hi\"\\", "-x", "runs/exp-1.2"}) {
    SCOPED_TRACE(name);
    const LoadedConfig loaded = load_config_text(std::string("run:\n  name: ") + format_value(name) +
                                                     "\nmodel:\n  teacher: t\ndata:\n  train: x\n",
                                                 "job.yaml");
    EXPECT_EQ(loaded.job.run.name, name);
  }
  EXPECT_EQ(format_value(std::string("runs/exp-1.2")), "runs/exp-1.2");
  EXPECT_EQ(format_value(std::string("1234")), "\"1234\"");
  EXPECT_EQ(format_value(2.0), "2.0");
  EXPECT_EQ(format_value(2e-5), "2e-05");
}

TEST(ConfigSuggest, ClosestKeyByEditDistance) {
  EXPECT_EQ(edit_distance("seq_lenn", "seq_len"), 1u);
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("Seq_Len", "seq_len"), 0u);
  const std::vector<std::string> keys = {"seq_len", "micro_batch_size", "global_batch_size"};
  EXPECT_EQ(closest_match("seqlen", keys), "seq_len");
  EXPECT_EQ(closest_match("micro_batchsize", keys), "micro_batch_size");
  EXPECT_EQ(closest_match("tokenizer", keys), "");
  EXPECT_EQ(closest_match("lrr", {"lr", "seed"}), "lr");
  EXPECT_EQ(closest_match("xy", {"lr"}), "");
}

}  // namespace
}  // namespace qtrain::config
