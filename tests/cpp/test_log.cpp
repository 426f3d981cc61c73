// lc::log: the handler receives warnings always and other levels from the threshold up; a
// throwing handler's exception reaches the caller of message() but never message_noexcept's.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lightning_core/log.h"

namespace {

struct Captured {
  std::vector<std::pair<int, std::string>> got;
};

TEST(Log, HandlerGetsWarningsAndLevelsFromTheThreshold) {
  Captured c;
  lc::log::set_handler([&](lc::log::Level lv, const std::string& t) {
    c.got.emplace_back(static_cast<int>(lv), t);
  });
  lc::log::set_threshold(lc::log::Level::warning);
  lc::log::info("dropped");
  EXPECT_FALSE(lc::log::enabled(lc::log::Level::info));
  lc::log::warn("kept");
  lc::log::set_threshold(lc::log::Level::debug);
  EXPECT_TRUE(lc::log::enabled(lc::log::Level::info));
  lc::log::info("note");
  lc::log::set_threshold(lc::log::Level::warning);
  lc::log::set_handler(nullptr);
  ASSERT_EQ(c.got.size(), 2u);
  EXPECT_EQ(c.got[0], std::make_pair(30, std::string("kept")));
  EXPECT_EQ(c.got[1], std::make_pair(20, std::string("note")));
}

TEST(Log, ThrowingHandlerReachesTheCallerButNotNoexceptCallers) {
  lc::log::set_handler([](lc::log::Level, const std::string& t) { throw std::runtime_error(t); });
  EXPECT_THROW(lc::log::warn("as error"), std::runtime_error);
  EXPECT_NO_THROW(lc::log::message_noexcept(lc::log::Level::warning, "printed instead"));
  lc::log::set_handler(nullptr);
  testing::internal::CaptureStderr();
  lc::log::warn("to stderr");
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "lightning_core: warning: to stderr\n");
}

}  // namespace
