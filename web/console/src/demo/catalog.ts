// The demo store's catalog: 50 products generated from a fixed list
// (deterministic: the same skus on every build, so events are comparable).

export interface Product { sku: string; name: string; category: string; price: number; color: string }

const CATEGORIES: [string, string[], number][] = [
  ['Shoes', ['Trail Shoes', 'Road Runners', 'Hiking Boots', 'Court Sneakers', 'Slip-ons'], 89],
  ['Jackets', ['Rain Jacket', 'Down Parka', 'Fleece', 'Windbreaker', 'Softshell'], 149],
  ['Socks', ['Wool Socks', 'Running Socks', 'Hiking Socks', 'Ankle Socks', 'Compression Socks'], 12.5],
  ['Bags', ['Daypack', 'Duffel', 'Tote', 'Sling Bag', 'Hip Pack'], 59],
  ['Hats', ['Beanie', 'Sun Hat', 'Cap', 'Bucket Hat', 'Trapper'], 24],
];
const COLORS = ['Forest', 'Slate'];

export const PRODUCTS: Product[] = CATEGORIES.flatMap(([category, names, base], c) =>
  names.flatMap((name, n) => COLORS.map((color, k) => ({
    sku: `sku-${c + 1}${n}${k}`,
    name: `${name}, ${color}`,
    category,
    color,
    price: Math.round((base * (1 + n * 0.12 + k * 0.05)) * 100) / 100,
  }))));

export function find(sku: string): Product | undefined {
  return PRODUCTS.find((p) => p.sku === sku);
}

export function search(query: string): Product[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  return PRODUCTS.filter((p) => words.every((w) => `${p.name} ${p.category}`.toLowerCase().includes(w)));
}
