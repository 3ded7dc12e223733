// Rules that span several fields (one field's own type and range are checked while loading).
#pragma once
#include <string>

#include "config/job_config.h"
#include "config/source.h"

namespace qtrain::config {

// Throws qtrain::Error naming the offending key, and the file and line that set it
// (`origin` without a line when the key kept its default).
void validate(const JobConfig& job, const Sources& sources, const std::string& origin);

}  // namespace qtrain::config
