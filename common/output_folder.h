// Output folders of the tools (run.output_dir, qtrain quantize/export --output): checked
// before any work (not empty, not a file, not in a pseudo file system, apart from every
// input, writable), and exports written as a whole (a staging folder that replaces the old).
#pragma once
#include <functional>
#include <string>
#include <vector>

namespace qtrain {

// Throws qtrain::Error naming `dir` and `key` if it is empty, exists and is not a folder,
// lies in /proc, /sys or /dev (not /dev/shm), is one of `inputs` (files or folders), lies inside one, or
// holds one (an export replacing its folder would remove that input). Nothing is created.
void check_output_folder(const std::string& dir, const std::string& key, const std::vector<std::string>& inputs = {});

// check_output_folder, then creates `dir` and proves it writable with a probe file (a
// folder the job cannot write fails now, not after hours of work).
void prepare_output_folder(const std::string& dir, const std::string& key,
                           const std::vector<std::string>& inputs = {});

// check_output_folder for a folder that write_folder_whole will write: creates its parent
// and proves the parent writable (the export is staged beside the folder).
void prepare_export_folder(const std::string& dir, const std::string& key,
                           const std::vector<std::string>& inputs = {});

// Writes a folder as a whole: `write(path)` fills a staging sibling (<dir>.tmp.<pid>, beside
// the folder `dir` resolves to), which then replaces it, the old one renamed aside and
// removed only once the new one is in place: a reader never meets old and new files mixed (a
// stale export's extra shards), and a failed write leaves the old folder as it was (the
// staging one is removed). A folder that is a mount point cannot be renamed and is written
// in place. `writer` false (a rank that only takes part in collective gathers): `write` is
// called with the staging path and nothing is moved.
void write_folder_whole(const std::string& dir, bool writer, const std::function<void(const std::string&)>& write);

}  // namespace qtrain
