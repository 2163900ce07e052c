// Package repotest holds tests about the repository as a whole: rules that
// every package must follow, checked rather than hoped for.
package repotest
