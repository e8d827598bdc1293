package demospace

import "container/list"

// lru is a map that holds at most max entries and forgets the least
// recently used one first. It is not safe for concurrent use: its owner
// guards it. Make one with newLRU.
type lru[K comparable, V any] struct {
	max   int
	order *list.List // of *lruEntry[K, V], most recently used first
	items map[K]*list.Element
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

// newLRU returns an empty lru that holds up to size entries (at least one).
func newLRU[K comparable, V any](size int) *lru[K, V] {
	return &lru[K, V]{max: max(size, 1), order: list.New(), items: make(map[K]*list.Element)}
}

// get returns the value of k and marks k as recently used.
func (c *lru[K, V]) get(k K) (V, bool) {
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).val, true
}

// peek returns the value of k without marking it as used.
func (c *lru[K, V]) peek(k K) (V, bool) {
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	return e.Value.(*lruEntry[K, V]).val, true
}

// put sets k to v and marks k as recently used. If that makes the map too
// big, the oldest entry is dropped and returned.
func (c *lru[K, V]) put(k K, v V) (old lruEntry[K, V], evicted bool) {
	if e, ok := c.items[k]; ok {
		e.Value.(*lruEntry[K, V]).val = v
		c.order.MoveToFront(e)
		return old, false
	}
	c.items[k] = c.order.PushFront(&lruEntry[K, V]{k, v})
	if len(c.items) <= c.max {
		return old, false
	}
	return c.removeOldest()
}

// removeOldest drops the least recently used entry and returns it.
func (c *lru[K, V]) removeOldest() (old lruEntry[K, V], ok bool) {
	e := c.order.Back()
	if e == nil {
		return old, false
	}
	ent := e.Value.(*lruEntry[K, V])
	c.order.Remove(e)
	delete(c.items, ent.key)
	return *ent, true
}

// remove drops k if present.
func (c *lru[K, V]) remove(k K) {
	if e, ok := c.items[k]; ok {
		c.order.Remove(e)
		delete(c.items, k)
	}
}

func (c *lru[K, V]) len() int { return len(c.items) }
