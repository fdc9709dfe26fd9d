// Package docs holds snf's guides as markdown. It has no code of its own: guide_test.go
// checks that the code the guides show is the code the repository builds and tests.
package docs
